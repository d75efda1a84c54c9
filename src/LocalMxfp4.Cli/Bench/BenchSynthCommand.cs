using System.CommandLine;
using System.Diagnostics;

namespace LocalMxfp4.Cli.Bench;

/// <summary><c>lmx bench synth</c>: write a synthetic MXFP4 model of a real LLaMA-3 shape for the benchmarks.</summary>
internal static class BenchSynthCommand
{
    public static Command Create()
    {
        var shape = new Option<string>("--shape") { Description = "1b (LLaMA-3.2-1B: hidden 2048, 16 layers, 32/8 heads, MLP 8192, tied) or 8b (LLaMA-3-8B).", DefaultValueFactory = _ => "1b" };
        var tokenizer = new Option<string>("--tokenizer") { Description = "Directory with the LLaMA-3 tokenizer.json (e.g. ../shared/tokenizers/llama3).", Required = true };
        var output = new Option<string>("--out") { Description = "Model directory to write.", Required = true };
        var seed = new Option<int>("--seed") { Description = "Weight seed.", DefaultValueFactory = _ => 1 };
        var overwrite = new Option<bool>("--overwrite") { Description = "Replace an existing directory." };
        var command = new Command("synth", "Write a synthetic MXFP4 model (Gaussian weights, RTN) of a real LLaMA-3 shape with the real tokenizer, for benchmarks.")
        {
            shape, tokenizer, output, seed, overwrite,
        };
        command.SetAction(parse =>
        {
            var clock = Stopwatch.StartNew();
            ModelShape s = ModelShape.Parse(parse.GetValue(shape)!);
            string outDir = parse.GetValue(output)!;
            SyntheticMxfp4Model.Write(s, parse.GetValue(tokenizer)!, outDir, parse.GetValue(seed), parse.GetValue(overwrite));
            Console.WriteLine($"wrote {s.Name}-shaped MXFP4 model to {Path.GetFullPath(outDir)} in {clock.Elapsed.TotalSeconds:F1} s");
            return 0;
        });
        return command;
    }
}
