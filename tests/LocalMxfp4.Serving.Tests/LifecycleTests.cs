using LocalMxfp4.Engine.Contract;
using LocalMxfp4.Engine.Sampling;

namespace LocalMxfp4.Serving.Tests;

/// <summary>Cancellation, memory pressure, limits and disposal of the engine loop.</summary>
public class LifecycleTests(ServingModels models)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static IReadOnlyList<int> Solo(IInferenceEngine engine, int[] prompt, int tokens, int context = 256)
    {
        using var alone = new ServingEngine(engine, new ServingOptions { ContextLength = context, MaxBatchSequences = 1, PrefixCaching = false });
        return alone.Generate(prompt, SamplingOptions.Greedy, tokens, new HashSet<int>(), cancellationToken: Ct).OutputTokenIds;
    }

    [Fact]
    public async Task CancellingOneSequenceMidBatchLeavesTheOthersUnchanged()
    {
        IInferenceEngine engine = models["llama3-w4a4"];
        int[][] prompts = Prompts.Random(21, engine.Config.VocabularySize, 12, 30, 7, 50);
        IReadOnlyList<int>[] solo = prompts.Select(p => Solo(engine, p, 20)).ToArray();
        using var serving = new ServingEngine(engine, new ServingOptions { ContextLength = 256, MaxBatchSequences = 4 });
        using var cancel = new CancellationTokenSource();
        var observers = new RecordingObserver[prompts.Length];
        for (int i = 0; i < prompts.Length; i++)
        {
            observers[i] = i == 1
                ? new RecordingObserver { OnTokenHook = (_, index) => { if (index == 5) { cancel.Cancel(); } return true; } }
                : new RecordingObserver();
            serving.Submit(Prompts.Request(prompts[i], 20, observers[i], cancellation: i == 1 ? cancel.Token : null));
        }

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => observers[1].Done);
        Assert.InRange(observers[1].Tokens.Count, 6, 7); // stopped before its next step
        foreach (int i in new[] { 0, 2, 3 })
        {
            Assert.Equal(solo[i], (await observers[i].Done).OutputTokenIds);
        }

        Assert.Equal(0, serving.Statistics.Memory.BlocksInUse);
        Assert.Equal(1, serving.Statistics.Failed);
    }

    [Fact]
    public async Task PoolExhaustionEvictsCachedPrefixesThenPreemptsAndEveryRequestCompletes()
    {
        IInferenceEngine engine = models["stories-w4a4"];
        const int context = 128;
        int[][] warm = Prompts.Random(31, engine.Config.VocabularySize, 60, 60);
        int[][] prompts = Prompts.Random(32, engine.Config.VocabularySize, 40, 50, 30, 45);
        IReadOnlyList<int>[] solo = prompts.Select(p => Solo(engine, p, 60, context)).ToArray();

        // The smallest pool allowed: one context (8 blocks of 16). Four sequences of 90–110 positions cannot all fit.
        using var serving = new ServingEngine(engine, new ServingOptions { ContextLength = context, MaxBatchSequences = 4, MaxBatchTokens = 64, KvCacheTokens = context });
        await DeterminismTests.RunAll(serving, warm, _ => SamplingOptions.Greedy, 4);
        Assert.True(serving.Statistics.Memory.CachedBlocks > 0, "finished requests leave their prefixes cached");

        RecordingObserver[] runs = await DeterminismTests.RunAll(serving, prompts, _ => SamplingOptions.Greedy, 60);
        for (int i = 0; i < prompts.Length; i++)
        {
            Assert.Equal(solo[i], (await runs[i].Done).OutputTokenIds);
        }

        ServingStatistics stats = serving.Statistics;
        TestContext.Current.TestOutputHelper?.WriteLine(stats.ToString());
        Assert.True(stats.Memory.Evictions > 0, "idle cached blocks are evicted first");
        Assert.True(stats.Preemptions > 0, "then running sequences are preempted");
        Assert.Contains(runs, r => r.Done.Result.Preemptions > 0);
        Assert.Equal(0, stats.Memory.BlocksInUse);
        Assert.Equal(stats.Memory.TotalBlocks, stats.Memory.CachedBlocks + stats.Memory.FreeBlocks);
    }

    [Fact]
    public void ContextOverflowIsATypedErrorAndAFullContextEndsTheReply()
    {
        IInferenceEngine engine = models["stories-f32"];
        using var serving = new ServingEngine(engine, new ServingOptions { ContextLength = 32, MaxBatchSequences = 2 });
        int[] tooLong = Prompts.Random(41, engine.Config.VocabularySize, 32)[0];
        ContextOverflowException e = Assert.Throws<ContextOverflowException>(() =>
            serving.Submit(Prompts.Request(tooLong, 4, new RecordingObserver())));
        Assert.Equal(32, e.ContextLength);

        // 20 prompt tokens in a 32-token context: positions 20…31 take 12 more tokens, the 13th is sampled but never fed.
        SequenceResult r = serving.Generate(tooLong[..20], SamplingOptions.Greedy, 100, new HashSet<int>(), cancellationToken: Ct);
        Assert.Equal(SequenceFinish.ContextFull, r.Finish);
        Assert.Equal(13, r.OutputTokenIds.Count);
    }

    [Fact]
    public async Task QueueLimitCancellationWhileQueuedObserverStopAndDispose()
    {
        IInferenceEngine engine = models["llama3-f32"];
        var serving = new ServingEngine(engine, new ServingOptions { ContextLength = 256, MaxBatchSequences = 1, MaxQueuedRequests = 2 });
        int[] prompt = Prompts.Random(51, engine.Config.VocabularySize, 8)[0];
        using var hold = new ManualResetEventSlim(false);
        var running = new RecordingObserver { OnTokenHook = (_, _) => { hold.Wait(Ct); return true; } };
        serving.Submit(Prompts.Request(prompt, 1000, running));
        while (serving.RunningCount == 0)
        {
            await Task.Delay(5, Ct);
        }

        using var cancel = new CancellationTokenSource();
        var queuedA = new RecordingObserver();
        var queuedB = new RecordingObserver();
        serving.Submit(Prompts.Request(prompt, 4, queuedA, cancellation: cancel.Token));
        serving.Submit(Prompts.Request(prompt, 4, queuedB));
        Assert.Throws<ServingQueueFullException>(() => serving.Submit(Prompts.Request(prompt, 4, new RecordingObserver())));

        cancel.Cancel(); // leaves the queue at once, although the loop is busy
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => queuedA.Done.WaitAsync(TimeSpan.FromSeconds(10), Ct));
        Assert.Equal(1, serving.QueuedCount);

        Task disposing = Task.Run(serving.Dispose, Ct);
        await Assert.ThrowsAsync<ObjectDisposedException>(() => queuedB.Done.WaitAsync(TimeSpan.FromSeconds(10), Ct));
        hold.Set();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => running.Done.WaitAsync(TimeSpan.FromSeconds(10), Ct));
        await disposing;
        Assert.Throws<ObjectDisposedException>(() => serving.Submit(Prompts.Request(prompt, 4, new RecordingObserver())));
        serving.Dispose();
    }

    [Fact]
    public async Task AnObserverCanEndItsSequenceAndAThrowingOneFailsOnlyItself()
    {
        IInferenceEngine engine = models["stories-f32"];
        using var serving = new ServingEngine(engine, new ServingOptions { ContextLength = 128, MaxBatchSequences = 3 });
        int[][] prompts = Prompts.Random(61, engine.Config.VocabularySize, 5, 6, 7);
        var stopping = new RecordingObserver { OnTokenHook = (_, index) => index < 3 };
        var throwing = new RecordingObserver { OnTokenHook = (_, index) => index == 2 ? throw new InvalidOperationException("observer bug") : true };
        var normal = new RecordingObserver();
        serving.Submit(Prompts.Request(prompts[0], 50, stopping));
        serving.Submit(Prompts.Request(prompts[1], 50, throwing));
        serving.Submit(Prompts.Request(prompts[2], 10, normal));

        SequenceResult stopped = await stopping.Done;
        Assert.Equal(SequenceFinish.Observer, stopped.Finish);
        Assert.Equal(4, stopped.OutputTokenIds.Count);
        await Assert.ThrowsAsync<InvalidOperationException>(() => throwing.Done);
        Assert.Equal(Solo(engine, prompts[2], 10, 128), (await normal.Done).OutputTokenIds);
        Assert.Equal(0, serving.Statistics.Memory.BlocksInUse);
    }

    [Fact]
    public void BadRequestsAreRefusedBeforeTheyAreQueued()
    {
        IInferenceEngine engine = models["stories-f32"];
        using var serving = new ServingEngine(engine, new ServingOptions { ContextLength = 64 });
        Assert.Throws<ArgumentException>(() => serving.Submit(Prompts.Request([], 4, new RecordingObserver())));
        Assert.Throws<ArgumentException>(() => serving.Submit(Prompts.Request([engine.Config.VocabularySize], 4, new RecordingObserver())));
        Assert.Throws<ArgumentException>(() => serving.Submit(Prompts.Request([1], 0, new RecordingObserver())));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ServingEngine(engine, new ServingOptions { ContextLength = 64, KvCacheTokens = 32 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ServingEngine(engine, new ServingOptions { ContextLength = engine.Config.MaxPositions + 1 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ServingEngine(engine, new ServingOptions { ContextLength = 64, MaxBatchSequences = 8, MaxBatchTokens = 4 }));
        Assert.Equal(0, serving.QueuedCount);
    }
}
