using System.Text.Json;
using LocalMxfp4.Engine.Sampling;
using LocalMxfp4.Serving;
using Microsoft.Extensions.AI;

namespace LocalMxfp4.ChatClient.Tests;

/// <summary>The chat client over the serving layer: prefix reuse across turns, and a mixed soak under continuous batching.</summary>
public class ServingTests(TinyLlama3Model llama)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static readonly AIFunction Weather = AIFunctionFactory.Create((string city, int days) => $"sunny in {city} for {days} days", "get_weather", "Gets the weather.");

    [Fact]
    public async Task ANextTurnReusesTheWholeConversationFromTheCacheAndGivesTheSameReply()
    {
        using DuQuantChatClient client = llama.Client(o => o.Temperature = 0);
        ServingEngine serving = client.GetService<ServingEngine>()!;
        var history = new List<ChatMessage> { new(ChatRole.System, "You are a terse assistant.") };
        string[] turns = ["Hello there, how are you today?", "Tell me about the sea.", "And the mountains?", "Thanks. One more thing: rivers?"];
        DuQuantCompletion? previous = null;
        int reused = 0;
        foreach (string turn in turns)
        {
            history.Add(new ChatMessage(ChatRole.User, turn));
            ChatResponse response = await client.GetResponseAsync(history, new() { MaxOutputTokens = 6 }, Ct);
            DuQuantCompletion c = response.Completion();
            Assert.Equal(c.CachedPromptTokens, (int)response.Usage!.CachedInputTokenCount!);
            if (previous is not null)
            {
                // What the previous request computed: its prompt and every reply token but the one that ended it.
                int computed = previous.PromptTokenIds.Count + previous.OutputTokenIds.Count - 1;
                int[] reply = [.. previous.OutputTokenIds.Take(previous.OutputTokenIds.Count - (previous.FinishReason == ChatFinishReason.Stop ? 1 : 0))];
                int[] expectedPrefix = [.. previous.PromptTokenIds, .. reply];
                if (reply.All(id => !llama.Tokenizer.IsSpecial(id)))
                {
                    reused++;
                    Assert.Equal(expectedPrefix, c.PromptTokenIds.Take(expectedPrefix.Length));
                    Assert.True(c.CachedPromptTokens >= computed / 16 * 16, $"cached {c.CachedPromptTokens} of {computed} computed tokens");
                }
            }

            // The same prompt alone, on an engine loop with nothing cached, gives the same reply.
            using var alone = new ServingEngine(llama.Engine, new ServingOptions { ContextLength = 512, MaxBatchSequences = 1, PrefixCaching = false });
            SequenceResult solo = alone.Generate(c.PromptTokenIds, SamplingOptions.Greedy, 6, llama.Engine.Config.EosTokenIds.Append(llama.Special("<|eot_id|>")).ToHashSet(), cancellationToken: Ct);
            Assert.Equal(solo.OutputTokenIds, c.OutputTokenIds);
            history.AddMessages(response);
            previous = c;
        }

        Assert.True(reused >= 2, $"only {reused} replies were plain text the next turn could reuse");
        Assert.True(serving.Statistics.PromptTokensCached > 0);
        Assert.Equal(0, serving.Statistics.Memory.BlocksInUse);
    }

    [Fact]
    public async Task SixtyFourMixedRequestsCompleteWithNoLossAndEveryKvBlockReturned()
    {
        const int seed = 4242;
        TestContext.Current.TestOutputHelper?.WriteLine($"soak seed {seed}");
        var rng = new Random(seed);
        string[] words = ["sea", "river", "stone", "light", "forest", "cloud", "iron", "song", "bread", "window"];
        var jobs = Enumerable.Range(0, 64).Select(i => new Job(
            i,
            string.Join(' ', Enumerable.Range(0, rng.Next(1, 60)).Select(_ => words[rng.Next(words.Length)])),
            rng.Next(4) switch { 0 => Kind.Stop, 1 => Kind.Tool, 2 => Kind.Json, _ => Kind.Plain },
            rng.Next(8) == 0 ? rng.Next(1, 6) : -1,
            rng.Next(4, 40))).ToArray();

        // Small KV memory for 8 concurrent requests: eviction and preemption happen along the way.
        using DuQuantChatClient client = llama.Client(o => { o.MaxConcurrentRequests = 8; o.MaxBatchTokens = 64; o.KvCacheTokens = 640; o.Temperature = 0; });
        ServingEngine serving = client.GetService<ServingEngine>()!;
        Task<string>[] runs = jobs.Select(j => Task.Run(() => RunAsync(client, j), Ct)).ToArray();
        string[] results = await Task.WhenAll(runs).WaitAsync(TimeSpan.FromMinutes(5), Ct);

        using DuQuantChatClient soloClient = llama.Client(o => { o.MaxConcurrentRequests = 1; o.PrefixCaching = false; o.Temperature = 0; });
        for (int i = 0; i < jobs.Length; i++)
        {
            if (results[i] != Cancelled)
            {
                // Cancellation jobs that finished before their cancellation point are compared too.
                Assert.Equal(await RunAsync(soloClient, jobs[i] with { CancelAfter = -1 }), results[i]);
            }
        }

        ServingStatistics stats = serving.Statistics;
        TestContext.Current.TestOutputHelper?.WriteLine(stats.ToString());
        Assert.Equal(64, stats.Completed + stats.Failed);
        Assert.Equal(results.Count(r => r == Cancelled), stats.Failed);
        Assert.True(results.Count(r => r == Cancelled) >= 3, "some requests were cancelled mid-stream");
        Assert.Equal(0, stats.Running);
        Assert.Equal(0, stats.Queued);
        Assert.Equal(0, stats.Memory.BlocksInUse);
        Assert.Equal(stats.Memory.TotalBlocks, stats.Memory.CachedBlocks + stats.Memory.FreeBlocks);
        Assert.True(stats.Memory.Evictions + stats.Preemptions > 0, "the soak ran under memory pressure");
    }

    private enum Kind
    {
        Plain,
        Stop,
        Tool,
        Json,
    }

    private sealed record Job(int Index, string Text, Kind Kind, int CancelAfter, int MaxTokens);

    private const string Cancelled = "(cancelled)";

    /// <summary>The reply's finish reason, text and calls, or <see cref="Cancelled"/> when the job cancelled itself mid-stream.</summary>
    private static async Task<string> RunAsync(IChatClient client, Job job)
    {
        var options = new ChatOptions { MaxOutputTokens = job.MaxTokens };
        switch (job.Kind)
        {
            case Kind.Stop:
                options.StopSequences = ["e", "o"];
                break;
            case Kind.Tool:
                options.Tools = [Weather];
                options.ToolMode = ChatToolMode.RequireAny;
                options.MaxOutputTokens = 96;
                break;
            case Kind.Json:
                options.ResponseFormat = ChatResponseFormat.Json;
                options.MaxOutputTokens = 64;
                break;
        }

        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var updates = new List<ChatResponseUpdate>();
        try
        {
            await foreach (ChatResponseUpdate u in client.GetStreamingResponseAsync([new ChatMessage(ChatRole.User, job.Text)], options, cancel.Token))
            {
                updates.Add(u);
                if (updates.Count == job.CancelAfter)
                {
                    cancel.Cancel();
                }
            }
        }
        catch (OperationCanceledException) when (job.CancelAfter > 0)
        {
            return Cancelled;
        }

        ChatResponse r = updates.ToChatResponse();
        string calls = string.Join(";", r.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>().Select(c => c.Name + JsonSerializer.Serialize(c.Arguments)));
        return $"{r.FinishReason}|{r.Text}|{calls}";
    }
}
