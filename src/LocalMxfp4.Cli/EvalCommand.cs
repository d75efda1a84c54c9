using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using LocalMxfp4.Engine.Contract;
using LocalMxfp4.Engine.Evaluation;
using LocalMxfp4.Engine.Loading;
using LocalMxfp4.Models.Checkpoint;
using LocalMxfp4.Tokenization;

namespace LocalMxfp4.Cli;

/// <summary><c>lmx eval ppl</c>: perplexity of a float or quantized model on a text.</summary>
internal static class EvalCommand
{
    public static Command Create()
    {
        var model = new Option<string?>("--model") { Description = "Model directory (float or quantized). Default: the bundled stories260K." };
        var text = new Option<string>("--text") { Description = "Evaluation text: plain text, documents separated by <|endoftext|> lines, or JSONL with a \"text\" field.", Required = true };
        var ctx = new Option<int?>("--ctx") { Description = "Window length (default: min(2048, the model's maximum))." };
        var maxWindows = new Option<int>("--max-windows") { Description = "Score at most this many windows (0 = all).", DefaultValueFactory = _ => 0 };
        var threads = new Option<int>("--threads") { Description = "Worker threads (0 = one per core).", DefaultValueFactory = _ => 0 };
        var backend = new BackendOptions();
        var ppl = new Command("ppl", "Perplexity: non-overlapping windows, mean NLL over every predicted position, PPL = exp(mean).")
        {
            model, text, ctx, maxWindows, threads,
        };
        foreach (Option option in backend.All)
        {
            ppl.Options.Add(option);
        }

        ppl.SetAction(parse => Run(DefaultModel.Resolve(parse.GetValue(model)), parse.GetValue(text)!, parse.GetValue(ctx), parse.GetValue(maxWindows), backend.Create(parse, parse.GetValue(threads))));
        return new Command("eval", "Evaluate a model.") { ppl };
    }

    private static int Run(string modelPath, string textPath, int? ctx, int maxWindows, EngineLoadOptions loadOptions)
    {
        var clock = Stopwatch.StartNew();
        using IInferenceEngine engine = EngineLoader.Load(modelPath, loadOptions);
        LlmTokenizer tokenizer = LlmTokenizer.Load(ModelDirectory.Resolve(modelPath).Directory);
        IReadOnlyList<string> docs = TextCorpus.LoadDocuments(textPath);
        int window = ctx ?? Math.Min(2048, engine.Config.MaxPositions);
        IProgress<(int Done, int Total)>? progress = Console.IsErrorRedirected ? null : new WindowProgress();
        PerplexityResult r = PerplexityEvaluator.Evaluate(engine, tokenizer, docs, window, maxWindows, progress);
        Console.Error.Write("\r");
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"model {modelPath} ({engine.Description.WeightFormat} weights, {engine.Description.ActivationFormat} activations, {engine.Description.Backend})"));
        if (BackendOptions.FallbackNote(loadOptions, engine) is string note)
        {
            Console.Error.WriteLine(note);
        }

        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"text {Path.GetFileName(textPath)}: {r.Windows} windows × {r.ContextLength} tokens, mean NLL {r.MeanNll:F5} nats, PPL {r.Perplexity:F4} ({clock.Elapsed.TotalSeconds:F1} s)"));
        return 0;
    }

    private sealed class WindowProgress : IProgress<(int Done, int Total)>
    {
        public void Report((int Done, int Total) value) => Console.Error.Write($"\rwindow {value.Done}/{value.Total}");
    }
}
