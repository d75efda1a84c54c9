using System.CommandLine;
using System.Globalization;
using LocalMxfp4.Models.Quantized;
using LocalMxfp4.Numerics.Mxfp4;
using LocalMxfp4.Quantization;
using Spectre.Console;

namespace LocalMxfp4.Cli;

/// <summary><c>lmx quantize</c>: float checkpoint → DuQuant++ (or baseline) W4A4 MXFP4 model.</summary>
internal static class QuantizeCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Float Hugging Face LLaMA checkpoint (directory or .safetensors file).", Required = true };
        var output = new Option<string>("--out") { Description = "Output directory (written to a temporary directory, renamed when complete).", Required = true };
        var method = new Option<string>("--method") { Description = "duquant | hadamard | rtn.", DefaultValueFactory = _ => "duquant" };
        var calib = new Option<string?>("--calib") { Description = "Calibration text: JSONL with a \"text\" field, documents separated by <|endoftext|>, or plain text. Never the evaluation text." };
        var samples = new Option<int>("--samples") { Description = "Calibration windows.", DefaultValueFactory = _ => 128 };
        var seqLen = new Option<int>("--seq-len") { Description = "Calibration window length (clamped to the model's context).", DefaultValueFactory = _ => 2048 };
        var scaleRule = new Option<string>("--scale-rule") { Description = "even (default, measured best) | floor (OCP reference rule) | roundup.", DefaultValueFactory = _ => "even" };
        var weightScales = new Option<string>("--weight-scales") { Description = "search (default: per-block E8M0 exponent search, least squared error) | rule (same rule as activations). GPTQ always uses the rule's static scales.", DefaultValueFactory = _ => "search" };
        var alpha = new Option<double?>("--alpha") { Description = "Smoothing α (default 0.6 for duquant, 0 for the baselines)." };
        var steps = new Option<int>("--steps") { Description = "Greedy rotation steps.", DefaultValueFactory = _ => 128 };
        var indexMode = new Option<string>("--rotation-index") { Description = "row-mod (released code) | channel (paper).", DefaultValueFactory = _ => "row-mod" };
        var gptq = new Option<bool>("--gptq") { Description = "Apply GPTQ after the transforms (DuQuant++*)." };
        var seed = new Option<int>("--seed") { Description = "Seed of the calibration windows and rotations.", DefaultValueFactory = _ => 2 };
        var threads = new Option<int>("--threads") { Description = "Worker threads (0 = one per core).", DefaultValueFactory = _ => 0 };
        var overwrite = new Option<bool>("--overwrite") { Description = "Replace an existing output directory." };
        var command = new Command("quantize", "Quantize a float LLaMA checkpoint to a W4A4 MXFP4 model.")
        {
            model, output, method, calib, samples, seqLen, scaleRule, weightScales, alpha, steps, indexMode, gptq, seed, threads, overwrite,
        };
        command.SetAction(parse =>
        {
            var options = new QuantizerOptions
            {
                Method = parse.GetValue(method) switch
                {
                    "duquant" => TransformMethod.DuQuant,
                    "hadamard" => TransformMethod.Hadamard,
                    "rtn" => TransformMethod.Rtn,
                    var m => throw new ArgumentOutOfRangeException("--method", m, $"--method '{m}' is not duquant, hadamard or rtn."),
                },
                ScaleRule = parse.GetValue(scaleRule) switch
                {
                    "floor" => ScaleRule.Floor,
                    "even" => ScaleRule.Even,
                    "roundup" => ScaleRule.RoundUp,
                    var r => throw new ArgumentOutOfRangeException("--scale-rule", r, $"--scale-rule '{r}' is not floor, even or roundup."),
                },
                WeightScales = parse.GetValue(weightScales) switch
                {
                    "rule" => WeightScaleMode.SameAsActivations,
                    "search" => WeightScaleMode.Search,
                    var w => throw new ArgumentOutOfRangeException("--weight-scales", w, $"--weight-scales '{w}' is not rule or search."),
                },
                RotationIndex = parse.GetValue(indexMode) switch
                {
                    "row-mod" => RotationIndexMode.RowMod,
                    "channel" => RotationIndexMode.Channel,
                    var i => throw new ArgumentOutOfRangeException("--rotation-index", i, $"--rotation-index '{i}' is not row-mod or channel."),
                },
                SmoothingAlpha = parse.GetValue(alpha),
                RotationSteps = parse.GetValue(steps),
                Gptq = parse.GetValue(gptq),
                Seed = parse.GetValue(seed),
                CalibrationFile = parse.GetValue(calib),
                CalibrationSamples = parse.GetValue(samples),
                CalibrationSequenceLength = parse.GetValue(seqLen),
                Threads = parse.GetValue(threads),
                Overwrite = parse.GetValue(overwrite),
            };
            return Run(parse.GetValue(model)!, parse.GetValue(output)!, options);
        });
        return command;
    }

    private static int Run(string source, string output, QuantizerOptions options)
    {
        QuantizationSummary? summary = null;
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
        console.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var tasks = new Dictionary<string, ProgressTask>();
                var progress = new SynchronousProgress<QuantizationProgress>(p =>
                {
                    if (!tasks.TryGetValue(p.Stage, out ProgressTask? task))
                    {
                        task = ctx.AddTask(p.Stage, maxValue: Math.Max(1, p.Total));
                        tasks[p.Stage] = task;
                    }

                    task.MaxValue = Math.Max(1, p.Total);
                    task.Value = p.Done;
                });
                summary = new ModelQuantizer(options, progress).Run(source, output);
            });

        var inv = CultureInfo.InvariantCulture;
        Console.WriteLine($"wrote {summary!.Output}");
        Console.WriteLine($"  {summary.Quantization}");
        Console.WriteLine(string.Create(inv, $"  MXFP4 weights {summary.WeightBytes / 1048576.0:F2} MiB, {summary.Elapsed.TotalSeconds:F1} s"));
        foreach ((string site, int stepsKept, double before, double after) in summary.Sites)
        {
            Console.WriteLine(string.Create(inv, $"  {site,-18} rotation: {stepsKept,3} steps kept, activation range {before:G4} → {after:G4}"));
        }

        return 0;
    }

    /// <summary>Reports on the calling thread (Progress&lt;T&gt; would post to the thread pool and arrive out of order).</summary>
    private sealed class SynchronousProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
