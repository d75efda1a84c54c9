using System.Diagnostics;
using Microsoft.Extensions.AI;

namespace LocalMxfp4.ChatClient.Tests;

/// <summary>The MEAI thread-safety contract: queued, cancellable, disposable under load.</summary>
public class ConcurrencyTests(TinyLlama3Model llama, Stories260KModel stories)
{
    private static async Task WaitUntilAsync(Func<bool> condition, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), "timed out waiting until " + what);
            await Task.Delay(5, TestContext.Current.CancellationToken);
        }
    }

    [Fact]
    public async Task ThirtyTwoConcurrentStreamingCallersGetTheirSequentialResults()
    {
        using DuQuantChatClient client = stories.Client(o => o.MaxConcurrentRequests = 2);
        CancellationToken ct = TestContext.Current.CancellationToken;
        ChatOptions Options(int i) => new() { Temperature = 1, Seed = i, MaxOutputTokens = 40 };
        List<ChatMessage> Messages(int i) => Chat.User(i % 2 == 0 ? "Once upon a time" : "The cat sat");

        var sequential = new List<string>();
        for (int i = 0; i < 32; i++)
        {
            sequential.Add(string.Concat((await client.GetStreamingResponseAsync(Messages(i), Options(i), ct).CollectAsync()).Select(u => u.Text)));
        }

        Task<string>[] concurrent = Enumerable.Range(0, 32).Select(i => Task.Run(async () =>
            string.Concat((await client.GetStreamingResponseAsync(Messages(i), Options(i), ct).CollectAsync()).Select(u => u.Text)), ct)).ToArray();
        string[] results = await Task.WhenAll(concurrent);
        Assert.Equal(sequential, results);
        Assert.True(sequential.Distinct().Count() > 16, "different seeds and prompts should give different replies");
        Assert.Equal(0, client.QueuedRequests);
    }

    [Fact]
    public async Task ARequestCancelledWhileQueuedLeavesTheQueueAndTheRunningOneFinishes()
    {
        using var gate = new ManualResetEventSlim(false);
        var engine = new InstrumentedEngine(llama.Engine) { Gate = gate };
        using DuQuantChatClient client = llama.Client(o => o.MaxConcurrentRequests = 1, engine);
        CancellationToken ct = TestContext.Current.CancellationToken;

        Task<ChatResponse> running = client.GetResponseAsync(Chat.User("first"), new() { MaxOutputTokens = 4 }, ct);
        await WaitUntilAsync(() => client.RunningRequests == 1, "the first request runs");
        using var cancel = new CancellationTokenSource();
        Task<ChatResponse> queued = client.GetResponseAsync(Chat.User("second"), new() { MaxOutputTokens = 4 }, cancel.Token);
        await WaitUntilAsync(() => client.QueuedRequests == 1, "the second request is queued");

        cancel.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => queued);
        Assert.Equal(0, client.QueuedRequests);

        gate.Set();
        ChatResponse first = await running;
        Assert.Equal(4, first.Usage!.OutputTokenCount);
    }

    [Fact]
    public async Task CancellingMidStreamStopsWithinOneTokenAndFreesTheSlot()
    {
        var engine = new InstrumentedEngine(llama.Engine);
        using DuQuantChatClient client = llama.Client(o => o.MaxConcurrentRequests = 1, engine);
        using var cancel = new CancellationTokenSource();
        int forwardsAtCancel = -1;
        int updates = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (ChatResponseUpdate u in client.GetStreamingResponseAsync(Chat.User("Go on and on"), new() { MaxOutputTokens = 400, Temperature = 0 }, cancel.Token))
            {
                updates++;
                if (updates == 3)
                {
                    forwardsAtCancel = engine.Forwards;
                    cancel.Cancel();
                }
            }
        });
        await WaitUntilAsync(() => client.RunningRequests == 0, "the worker lets go");
        Assert.InRange(engine.Forwards - forwardsAtCancel, 0, 1);
        Assert.True(engine.Forwards < 400, "the request stopped long before its 400 tokens");
        Assert.Equal(0, client.GetService<LocalMxfp4.Serving.ServingEngine>()!.Statistics.Memory.BlocksInUse);

        ChatResponse next = await client.GetResponseAsync(Chat.User("Next"), new() { MaxOutputTokens = 3 }, TestContext.Current.CancellationToken);
        Assert.Equal(3, next.Usage!.OutputTokenCount);
    }

    [Fact]
    public async Task AbandoningAStreamFreesTheSlot()
    {
        var engine = new InstrumentedEngine(llama.Engine);
        using DuQuantChatClient client = llama.Client(o => o.MaxConcurrentRequests = 1, engine);
        await foreach (ChatResponseUpdate u in client.GetStreamingResponseAsync(Chat.User("Go"), new() { MaxOutputTokens = 400 }, TestContext.Current.CancellationToken))
        {
            break;
        }

        await WaitUntilAsync(() => client.RunningRequests == 0, "the abandoned request stops");
        Assert.True(engine.Forwards < 400);
    }

    [Fact]
    public async Task AFullQueueRefusesWithATypedError()
    {
        using var gate = new ManualResetEventSlim(false);
        using DuQuantChatClient client = llama.Client(o => { o.MaxConcurrentRequests = 1; o.MaxQueuedRequests = 1; }, new InstrumentedEngine(llama.Engine) { Gate = gate });
        CancellationToken ct = TestContext.Current.CancellationToken;
        Task<ChatResponse> a = client.GetResponseAsync(Chat.User("a"), new() { MaxOutputTokens = 2 }, ct);
        await WaitUntilAsync(() => client.RunningRequests == 1, "a runs");
        Task<ChatResponse> b = client.GetResponseAsync(Chat.User("b"), new() { MaxOutputTokens = 2 }, ct);
        await WaitUntilAsync(() => client.QueuedRequests == 1, "b waits");
        var full = await Assert.ThrowsAsync<DuQuantQueueFullException>(() => client.GetResponseAsync(Chat.User("c"), cancellationToken: ct));
        Assert.Equal(1, full.MaxQueuedRequests);
        gate.Set();
        await Task.WhenAll(a, b);
    }

    [Fact]
    public async Task DisposeIsIdempotentAndEndsQueuedAndRunningRequests()
    {
        using var gate = new ManualResetEventSlim(false);
        var client = llama.Client(o => o.MaxConcurrentRequests = 1, new InstrumentedEngine(llama.Engine) { Gate = gate });
        CancellationToken ct = TestContext.Current.CancellationToken;
        Task<ChatResponse> running = client.GetResponseAsync(Chat.User("a"), new() { MaxOutputTokens = 50 }, ct);
        await WaitUntilAsync(() => client.RunningRequests == 1, "a runs");
        Task<ChatResponse> queued = client.GetResponseAsync(Chat.User("b"), new() { MaxOutputTokens = 2 }, ct);
        await WaitUntilAsync(() => client.QueuedRequests == 1, "b waits");

        Task disposing = Task.Run(client.Dispose, ct);
        await Assert.ThrowsAsync<ObjectDisposedException>(() => queued);
        gate.Set();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => running);
        await disposing;

        client.Dispose();
        Assert.Throws<ObjectDisposedException>(() => client.GetStreamingResponseAsync(Chat.User("c"), cancellationToken: ct));
        Assert.Null(client.GetService<DuQuantBackendInfo>());
        Assert.NotNull(client.GetService<ChatClientMetadata>());
    }
}
