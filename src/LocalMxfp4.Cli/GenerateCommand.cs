using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using LocalMxfp4.Engine.Contract;
using LocalMxfp4.Engine.Loading;
using LocalMxfp4.Engine.Sampling;
using LocalMxfp4.Models.Checkpoint;
using LocalMxfp4.Serving;
using LocalMxfp4.Tokenization;

namespace LocalMxfp4.Cli;

/// <summary><c>lmx generate</c>: stream a completion of a prompt to the console.</summary>
internal static class GenerateCommand
{
    public static Command Create()
    {
        var model = new Option<string?>("--model") { Description = "Model directory (or a .safetensors file in one). Default: the bundled stories260K." };
        var prompt = new Option<string>("--prompt") { Description = "Text to continue (BOS is prepended). Default: empty, i.e. generate from BOS.", DefaultValueFactory = _ => string.Empty };
        var maxTokens = new Option<int>("--max-tokens") { Description = "New tokens at most.", DefaultValueFactory = _ => 256 };
        var temperature = new Option<float>("--temperature") { Description = "0 = greedy.", DefaultValueFactory = _ => 0.8f };
        var topP = new Option<float>("--top-p") { Description = "Nucleus mass (1 = off).", DefaultValueFactory = _ => 0.95f };
        var topK = new Option<int>("--top-k") { Description = "Keep the k most likely tokens (0 = off).", DefaultValueFactory = _ => 0 };
        var repetition = new Option<float>("--repetition-penalty") { Description = "1 = off.", DefaultValueFactory = _ => 1f };
        var seed = new Option<int?>("--seed") { Description = "Sampling seed (same seed → same text)." };
        var context = new Option<int?>("--context") { Description = "KV-cache length in tokens. Default: prompt + max tokens, at most the model's maximum." };
        var threads = new Option<int>("--threads") { Description = "Worker threads (0 = one per core).", DefaultValueFactory = _ => 0 };
        var showIds = new Option<bool>("--show-ids") { Description = "Print the generated token ids to stderr at the end." };
        var backend = new BackendOptions();
        var command = new Command("generate", "Generate text from a prompt, streamed as it is produced.")
        {
            model, prompt, maxTokens, temperature, topP, topK, repetition, seed, context, threads, showIds,
        };
        foreach (Option option in backend.All)
        {
            command.Options.Add(option);
        }

        command.SetAction((parse, cancellationToken) => Task.FromResult(Run(
            DefaultModel.Resolve(parse.GetValue(model)),
            parse.GetValue(prompt) ?? string.Empty,
            parse.GetValue(maxTokens),
            new SamplingOptions
            {
                Temperature = parse.GetValue(temperature),
                TopP = parse.GetValue(topP),
                TopK = parse.GetValue(topK),
                RepetitionPenalty = parse.GetValue(repetition),
                Seed = parse.GetValue(seed),
            },
            parse.GetValue(context),
            backend.Create(parse, parse.GetValue(threads)),
            parse.GetValue(showIds),
            cancellationToken)));
        return command;
    }

    private static int Run(string modelPath, string promptText, int maxTokens, SamplingOptions sampling, int? contextLength, EngineLoadOptions loadOptions, bool showIds, CancellationToken cancellationToken)
    {
        if (maxTokens < 0)
        {
            throw new ArgumentOutOfRangeException("--max-tokens", maxTokens, "--max-tokens must be ≥ 0.");
        }

        sampling.Validate();
        var load = Stopwatch.StartNew();
        ModelDirectory dir = ModelDirectory.Resolve(modelPath);
        LlmTokenizer tokenizer = LlmTokenizer.Load(dir.Directory);
        using IInferenceEngine engine = EngineLoader.Load(modelPath, loadOptions);
        load.Stop();

        var promptIds = new List<int>();
        if ((engine.Config.BosTokenId ?? tokenizer.BeginOfSequenceId) is int bos)
        {
            promptIds.Add(bos);
        }

        promptIds.AddRange(tokenizer.Encode(promptText));
        if (promptIds.Count >= engine.Config.MaxPositions)
        {
            throw new ArgumentOutOfRangeException("--prompt", promptIds.Count, $"The prompt has {promptIds.Count} tokens; the model's context is {engine.Config.MaxPositions}.");
        }

        int context = Math.Clamp(contextLength ?? (promptIds.Count + maxTokens), promptIds.Count + 1, engine.Config.MaxPositions);
        var stops = new HashSet<int>(engine.Config.EosTokenIds.Concat(tokenizer.EndOfSequenceIds));
        Console.Write(promptText);
        var ids = new List<int>();
        SequenceResult? result = null;
        if (maxTokens > 0)
        {
            // The same engine loop (and token rule: penalties over the reply, never the prompt) as the chat client.
            using var serving = new ServingEngine(engine, new ServingOptions { ContextLength = context, MaxBatchSequences = 1, KvCacheTokens = context });
            StreamingDetokenizer detokenizer = tokenizer.CreateStreamingDetokenizer();
            result = serving.Generate(promptIds, sampling, maxTokens, stops, token =>
            {
                if (!stops.Contains(token))
                {
                    ids.Add(token);
                    Console.Write(detokenizer.Append(token));
                }

                return true;
            }, cancellationToken);
            Console.Write(detokenizer.Flush());
        }

        Console.WriteLine();
        double firstTokenMs = result?.TimeToFirstToken.TotalMilliseconds ?? 0;
        double decodeSeconds = result?.DecodeTime.TotalSeconds ?? 0;
        int sampled = result?.OutputTokenIds.Count ?? 0;
        string finish = result?.Finish switch
        {
            null => "Length",
            SequenceFinish.StopToken => "Stop",
            SequenceFinish.ContextFull => "ContextFull",
            _ => "Length",
        };
        Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"[{engine.Description.Backend} {engine.Description.WeightFormat}, {engine.Description.Threads} threads] load {load.Elapsed.TotalMilliseconds:F0} ms, prompt {promptIds.Count} tokens, " +
            $"generated {ids.Count} tokens in {firstTokenMs + (decodeSeconds * 1000):F0} ms (first {firstTokenMs:F1} ms, " +
            $"{(sampled > 1 && decodeSeconds > 0 ? (sampled - 1) / decodeSeconds : 0):F1} tok/s decode), finish: {finish}"));
        if (BackendOptions.FallbackNote(loadOptions, engine) is string note)
        {
            Console.Error.WriteLine(note);
        }

        if (showIds)
        {
            Console.Error.WriteLine($"ids: {string.Join(' ', ids)}");
        }

        return 0;
    }
}
