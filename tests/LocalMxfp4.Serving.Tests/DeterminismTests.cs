using LocalMxfp4.Engine.Contract;
using LocalMxfp4.Engine.Sampling;

namespace LocalMxfp4.Serving.Tests;

/// <summary>
/// A request gives the same tokens alone, batched with others (mixed with their chunked prefills), on a cached prefix,
/// and on the session-slot backend — at temperature 0 and with seeded sampling.
/// </summary>
public class DeterminismTests(ServingModels models)
{
    public static TheoryData<string, KvCachePrecision> Cases() => new()
    {
        { "stories-f32", KvCachePrecision.Float32 },
        { "stories-w4a4", KvCachePrecision.Float32 },
        { "stories-w4a4", KvCachePrecision.BFloat16 },
        { "llama3-f32", KvCachePrecision.Float32 },
        { "llama3-w4a4", KvCachePrecision.Float32 },
        { "llama3-w4a4", KvCachePrecision.BFloat16 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task BatchedEqualsSoloEqualsCachedPrefix(string model, KvCachePrecision precision)
    {
        IInferenceEngine engine = models[model];
        int[][] prompts = Prompts.Random(1000 + (int)precision, engine.Config.VocabularySize, 1, 5, 17, 33, 40, 64, 3, 90);
        // Two prompts share a 48-token prefix with another one (a common system prompt).
        prompts[6] = [.. prompts[7][..48], .. prompts[6]];
        prompts[3] = [.. prompts[7][..48], .. prompts[3]];
        SamplingOptions Sampling(int i) => i % 2 == 0 ? SamplingOptions.Greedy : new SamplingOptions { Temperature = 0.9f, TopP = 0.95f, Seed = 40 + i };
        const int tokens = 12;

        var solo = new List<IReadOnlyList<int>>();
        for (int i = 0; i < prompts.Length; i++)
        {
            using var alone = new ServingEngine(engine, new ServingOptions { ContextLength = 256, MaxBatchSequences = 1, PrefixCaching = false, KvCachePrecision = precision });
            solo.Add(alone.Generate(prompts[i], Sampling(i), tokens, new HashSet<int>(), cancellationToken: TestContext.Current.CancellationToken).OutputTokenIds);
        }

        if (precision == KvCachePrecision.Float32)
        {
            // The plain session API (contiguous cache, no serving layer) agrees at temperature 0.
            for (int i = 0; i < prompts.Length; i += 2)
            {
                Assert.Equal(SessionGreedy(engine, prompts[i], tokens), solo[i]);
            }
        }

        using var batched = new ServingEngine(engine, new ServingOptions { ContextLength = 256, MaxBatchSequences = 8, MaxBatchTokens = 32, KvCachePrecision = precision });
        RecordingObserver[] first = await RunAll(batched, prompts, Sampling, tokens);
        for (int i = 0; i < prompts.Length; i++)
        {
            Assert.Equal(solo[i], (await first[i].Done).OutputTokenIds);
        }

        // Again on the same engine: every prompt's whole blocks (before its last token) now come from the cache.
        RecordingObserver[] second = await RunAll(batched, prompts, Sampling, tokens);
        for (int i = 0; i < prompts.Length; i++)
        {
            Assert.Equal(solo[i], (await second[i].Done).OutputTokenIds);
            Assert.Equal((prompts[i].Length - 1) / 16 * 16, second[i].CachedTokens);
        }

        Assert.Equal(0, batched.Statistics.Memory.BlocksInUse);

        using var slots = new ServingEngine(engine, new ServingOptions { ContextLength = 256, MaxBatchSequences = 3, MaxBatchTokens = 32 }, batched: false);
        RecordingObserver[] viaSlots = await RunAll(slots, prompts, Sampling, tokens);
        for (int i = 0; i < prompts.Length; i++)
        {
            if (precision == KvCachePrecision.Float32)
            {
                Assert.Equal(solo[i], (await viaSlots[i].Done).OutputTokenIds);
            }
            else
            {
                await viaSlots[i].Done; // the slots keep float32 sessions: same requests, not the same numbers
            }
        }
    }

    [Fact]
    public async Task ASharedPrefixIsComputedOnceForConcurrentRequests()
    {
        IInferenceEngine engine = models["llama3-w4a4"];
        int[] system = Prompts.Random(7, engine.Config.VocabularySize, 64)[0];
        int[][] prompts = Prompts.Random(8, engine.Config.VocabularySize, 5, 9, 13).Select(p => (int[])[.. system, .. p]).ToArray();
        using var serving = new ServingEngine(engine, new ServingOptions { ContextLength = 256, MaxBatchSequences = 4 });
        await RunAll(serving, [system], _ => SamplingOptions.Greedy, 2);
        RecordingObserver[] runs = await RunAll(serving, prompts, _ => SamplingOptions.Greedy, 4);
        Assert.All(runs, r => Assert.Equal(64, r.CachedTokens));
    }

    internal static async Task<RecordingObserver[]> RunAll(ServingEngine serving, int[][] prompts, Func<int, SamplingOptions> sampling, int tokens)
    {
        var observers = prompts.Select(_ => new RecordingObserver()).ToArray();
        for (int i = 0; i < prompts.Length; i++)
        {
            serving.Submit(Prompts.Request(prompts[i], tokens, observers[i], sampling(i)));
        }

        await Task.WhenAll(observers.Select(o => o.Done)).WaitAsync(TimeSpan.FromMinutes(2), TestContext.Current.CancellationToken);
        return observers;
    }

    private static int[] SessionGreedy(IInferenceEngine engine, int[] prompt, int tokens)
    {
        using IInferenceSession session = engine.CreateSession(256);
        var logits = new float[engine.Config.VocabularySize];
        session.Forward(prompt, logits);
        var output = new int[tokens];
        for (int i = 0; i < tokens; i++)
        {
            output[i] = Sampler.ArgMax(logits);
            if (i + 1 < tokens)
            {
                session.Forward([output[i]], logits);
            }
        }

        return output;
    }
}
