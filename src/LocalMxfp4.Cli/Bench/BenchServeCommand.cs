using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using LocalMxfp4.ChatClient;
using LocalMxfp4.Engine.Contract;
using LocalMxfp4.Engine.Loading;
using LocalMxfp4.Serving;
using LocalMxfp4.Tokenization;
using Microsoft.Extensions.AI;

namespace LocalMxfp4.Cli.Bench;

/// <summary>
/// <c>lmx bench serve</c>: what a user of the chat client sees — (a) a multi-turn chat through
/// <see cref="DuQuantChatClient"/>: time to first token and cached prompt tokens per turn, with the prefix cache and
/// without it; (b) 1, 2, 4, 8 concurrent requests: aggregate output tokens per second and per-request time to first
/// token, under continuous batching. Prompts are seeded word salads (the replies of a synthetic model are noise; the
/// token counts and timings are a real model's).
/// </summary>
internal static class BenchServeCommand
{
    private static readonly string[] Words =
    [
        "river", "stone", "light", "forest", "cloud", "iron", "song", "bread", "window", "garden", "winter", "letter", "market",
        "silver", "engine", "harbor", "mountain", "paper", "thunder", "village", "copper", "lantern", "meadow", "signal", "bridge",
        "orchard", "candle", "violin", "compass", "glacier", "library", "machine", "quiet", "bright", "ancient", "careful", "distant",
        "golden", "hollow", "narrow", "patient", "rapid", "simple", "tender", "under", "across", "between", "toward", "behind", "beyond",
    ];

    public static Command Create()
    {
        var model = new Option<string?>("--model") { Description = "Model directory (default: the bundled stories260K)." };
        var turns = new Option<int>("--turns") { Description = "Turns of the chat.", DefaultValueFactory = _ => 6 };
        var words = new Option<int>("--words") { Description = "Words per user turn.", DefaultValueFactory = _ => 140 };
        var outputTokens = new Option<int>("--output-tokens") { Description = "Reply tokens per turn.", DefaultValueFactory = _ => 16 };
        var concurrency = new Option<string>("--concurrency") { Description = "Comma-separated numbers of concurrent requests.", DefaultValueFactory = _ => "1,2,4,8" };
        var concurrentTokens = new Option<int>("--concurrent-output-tokens") { Description = "Reply tokens per concurrent request.", DefaultValueFactory = _ => 64 };
        var promptWords = new Option<int>("--prompt-words") { Description = "Words per concurrent request's prompt.", DefaultValueFactory = _ => 24 };
        var threads = new Option<int>("--threads") { Description = "Worker threads (0 = one per core).", DefaultValueFactory = _ => 0 };
        var output = new Option<string?>("--out") { Description = "Write the results as JSON here." };
        var command = new Command("serve", "Multi-turn chat latency (prefix cache on and off) and concurrent-request throughput through DuQuantChatClient.")
        {
            model, turns, words, outputTokens, concurrency, concurrentTokens, promptWords, threads, output,
        };
        command.SetAction((parse, ct) => Run(
            DefaultModel.Resolve(parse.GetValue(model)), parse.GetValue(turns), parse.GetValue(words), parse.GetValue(outputTokens),
            [.. parse.GetValue(concurrency)!.Split(',', StringSplitOptions.RemoveEmptyEntries).Select(s => int.Parse(s, CultureInfo.InvariantCulture))],
            parse.GetValue(concurrentTokens), parse.GetValue(promptWords), parse.GetValue(threads), parse.GetValue(output), ct));
        return command;
    }

    private static async Task<int> Run(string modelPath, int turns, int words, int outputTokens, int[] concurrency, int concurrentTokens, int promptWords, int threads, string? outputPath, CancellationToken ct)
    {
        var inv = CultureInfo.InvariantCulture;
        using IInferenceEngine engine = EngineLoader.Load(modelPath, new EngineLoadOptions { Backend = EngineBackend.Cpu, Threads = threads });
        LlmTokenizer tokenizer = LlmTokenizer.Load(Path.GetDirectoryName(Path.GetFullPath(Path.Combine(modelPath, "config.json")))!);
        Console.WriteLine($"lmx bench serve — {modelPath}: {engine.Config.LayerCount} layers, hidden {engine.Config.HiddenSize}, {engine.Description.WeightFormat}/{engine.Description.ActivationFormat}, {engine.Description.Threads} threads; {Environment.ProcessorCount} logical CPUs, {RuntimeInformation.OSDescription}, {RuntimeInformation.FrameworkDescription}");
        int maxConcurrency = concurrency.Length == 0 ? 1 : concurrency.Max();
        DuQuantChatClient Client(bool prefixCaching) => new(engine, tokenizer, new DuQuantChatClientOptions
        {
            ModelPath = modelPath,
            ContextLength = Math.Min(engine.Config.MaxPositions, 4096),
            Temperature = 0,
            MaxConcurrentRequests = maxConcurrency,
            PrefixCaching = prefixCaching,
        });

        // Warm-up: JIT tiers, page faults, worker threads.
        using (DuQuantChatClient warm = Client(false))
        {
            await warm.GetResponseAsync([new ChatMessage(ChatRole.User, Text(new Random(0), words))], new ChatOptions { MaxOutputTokens = 4 }, ct);
        }

        var chat = new List<object>();
        double[][] ttft = new double[2][];
        for (int mode = 0; mode < 2; mode++)
        {
            bool caching = mode == 0;
            using DuQuantChatClient client = Client(caching);
            var rng = new Random(6);
            var history = new List<ChatMessage>();
            ttft[mode] = new double[turns];
            Console.WriteLine();
            Console.WriteLine($"{turns}-turn chat, {words}-word user turns, {outputTokens}-token replies, prefix cache {(caching ? "on" : "off")}:");
            Console.WriteLine($"{"turn",4} {"prompt",7} {"cached",7} {"computed",8} {"TTFT ms",9} {"prefill ms",10} {"decode tok/s",12}");
            for (int t = 0; t < turns; t++)
            {
                history.Add(new ChatMessage(ChatRole.User, Text(rng, words)));
                ChatResponse r = await client.GetResponseAsync(history, new ChatOptions { MaxOutputTokens = outputTokens }, ct);
                var c = (DuQuantCompletion)r.RawRepresentation!;
                history.AddMessages(r);
                ttft[mode][t] = c.TimeToFirstToken.TotalMilliseconds;
                Console.WriteLine(string.Create(inv, $"{t + 1,4} {c.PromptTokenIds.Count,7} {c.CachedPromptTokens,7} {c.PromptTokenIds.Count - c.CachedPromptTokens,8} {c.TimeToFirstToken.TotalMilliseconds,9:F0} {c.PrefillTime.TotalMilliseconds,10:F0} {c.DecodeTokensPerSecond,12:F1}"));
                chat.Add(new { prefixCache = caching, turn = t + 1, promptTokens = c.PromptTokenIds.Count, cachedTokens = c.CachedPromptTokens, ttftMs = c.TimeToFirstToken.TotalMilliseconds, prefillMs = c.PrefillTime.TotalMilliseconds, outputTokens = c.OutputTokenIds.Count, decodeTokensPerSecond = c.DecodeTokensPerSecond });
            }

            Console.WriteLine(string.Create(inv, $"turn-{turns} TTFT / turn-1 TTFT = {ttft[mode][^1] / ttft[mode][0]:F2}"));
        }

        var concurrent = new List<object>();
        Console.WriteLine();
        Console.WriteLine($"concurrent requests ({promptWords}-word prompts, {concurrentTokens}-token replies, MaxConcurrentRequests = {maxConcurrency}):");
        Console.WriteLine($"{"requests",8} {"wall s",7} {"output tok/s",12} {"vs 1",6} {"decode tok/s",12} {"vs 1",6} {"TTFT mean ms",12} {"TTFT max ms",11}");
        using (DuQuantChatClient client = Client(false))
        {
            ServingEngine serving = client.GetService<ServingEngine>()!;
            double single = 0, singleDecode = 0;
            foreach (int n in concurrency)
            {
                var rng = new Random(100 + n);
                string[] prompts = [.. Enumerable.Range(0, n).Select(_ => Text(rng, promptWords))];
                ServingStatistics before = serving.Statistics;
                var clock = Stopwatch.StartNew();
                Task<ChatResponse>[] runs = [.. prompts.Select(p => client.GetResponseAsync([new ChatMessage(ChatRole.User, p)], new ChatOptions { MaxOutputTokens = concurrentTokens }, ct))];
                ChatResponse[] done = await Task.WhenAll(runs);
                double wall = clock.Elapsed.TotalSeconds;
                ServingStatistics after = serving.Statistics;
                DuQuantCompletion[] cs = [.. done.Select(d => (DuQuantCompletion)d.RawRepresentation!)];
                int tokens = cs.Sum(c => c.OutputTokenIds.Count);
                double rate = tokens / wall;
                // The engine loop's own measure of batched decoding: tokens of the decode-only steps over their forward time.
                double decodeSeconds = (after.DecodeStepTime - before.DecodeStepTime).TotalSeconds;
                double decodeRate = decodeSeconds > 0 ? (after.DecodeStepTokens - before.DecodeStepTokens) / decodeSeconds : 0;
                if (n == 1)
                {
                    single = rate;
                    singleDecode = decodeRate;
                }

                Console.WriteLine(string.Create(inv, $"{n,8} {wall,7:F2} {rate,12:F1} {(single > 0 ? rate / single : 0),5:F2}× {decodeRate,12:F1} {(singleDecode > 0 ? decodeRate / singleDecode : 0),5:F2}× {cs.Average(c => c.TimeToFirstToken.TotalMilliseconds),12:F0} {cs.Max(c => c.TimeToFirstToken.TotalMilliseconds),11:F0}"));
                concurrent.Add(new
                {
                    requests = n, wallSeconds = wall, outputTokens = tokens, outputTokensPerSecond = rate, outputRatioToOne = single > 0 ? rate / single : 0,
                    decodeTokensPerSecond = decodeRate, decodeRatioToOne = singleDecode > 0 ? decodeRate / singleDecode : 0,
                    ttftMeanMs = cs.Average(c => c.TimeToFirstToken.TotalMilliseconds), ttftMaxMs = cs.Max(c => c.TimeToFirstToken.TotalMilliseconds),
                });
            }
        }

        if (outputPath is not null)
        {
            File.WriteAllText(outputPath, JsonSerializer.Serialize(new
            {
                date = DateTime.UtcNow.ToString("yyyy-MM-dd", inv),
                machine = $"{Environment.ProcessorCount} logical CPUs, {RuntimeInformation.OSDescription}",
                runtime = RuntimeInformation.FrameworkDescription,
                model = Path.GetFullPath(modelPath),
                engine = engine.Description,
                settings = new { turns, words, outputTokens, concurrentOutputTokens = concurrentTokens, promptWords },
                chat,
                ttftRatioLastToFirst = new { prefixCache = ttft[0][^1] / ttft[0][0], noPrefixCache = ttft[1][^1] / ttft[1][0] },
                concurrent,
            }, new JsonSerializerOptions { WriteIndented = true }));
            Console.WriteLine($"results: {Path.GetFullPath(outputPath)}");
        }

        return 0;
    }

    private static string Text(Random rng, int count) => string.Join(' ', Enumerable.Range(0, count).Select(_ => Words[rng.Next(Words.Length)])) + ".";
}
