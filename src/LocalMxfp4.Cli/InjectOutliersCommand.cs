using System.CommandLine;
using System.Globalization;
using LocalMxfp4.Quantization.Fixtures;

namespace LocalMxfp4.Cli;

/// <summary><c>lmx inject-outliers</c>: a function-preserving copy of a float model with LLaMA-3-like outlier channels (for quantizer comparisons).</summary>
internal static class InjectOutliersCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Float model to copy.", Required = true };
        var output = new Option<string>("--out") { Description = "Output directory.", Required = true };
        var seed = new Option<int>("--seed") { Description = "Seed of the channel and α choice.", DefaultValueFactory = _ => 1 };
        var channels = new Option<int>("--channels") { Description = "Outlier channels per linear input.", DefaultValueFactory = _ => 3 };
        var overwrite = new Option<bool>("--overwrite") { Description = "Replace an existing output directory." };
        var command = new Command("inject-outliers", "Copy a float model, giving a few channels per linear input outliers of 10–100× without changing its function (test-models.md §2).")
        {
            model, output, seed, channels, overwrite,
        };
        command.SetAction(parse =>
        {
            IReadOnlyList<OutlierInjection.Injection> done = OutlierInjection.WriteInjected(
                parse.GetValue(model)!, parse.GetValue(output)!, parse.GetValue(seed), parse.GetValue(channels), parse.GetValue(overwrite));
            Console.WriteLine($"wrote {Path.GetFullPath(parse.GetValue(output)!)}: {done.Count} outlier channels (seed {parse.GetValue(seed)})");
            foreach (IGrouping<string, OutlierInjection.Injection> site in done.GroupBy(d => d.Site))
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {site.Key,-8} α {site.Min(d => d.Alpha):F1} … {site.Max(d => d.Alpha):F1}"));
            }

            return 0;
        });
        return command;
    }
}
