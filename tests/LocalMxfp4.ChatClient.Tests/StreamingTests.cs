using System.Text;
using Microsoft.Extensions.AI;

namespace LocalMxfp4.ChatClient.Tests;

public class StreamingTests(TinyLlama3Model llama, Stories260KModel stories)
{
    [Fact]
    public async Task EveryUpdateCarriesTheIdsAndTheLastOneFinishReasonAndUsage()
    {
        using DuQuantChatClient client = llama.Client(o => o.ModelId = "tiny");
        List<ChatResponseUpdate> updates = await client.GetStreamingResponseAsync(Chat.User("Hi"), new() { MaxOutputTokens = 8, Temperature = 0 }, TestContext.Current.CancellationToken).CollectAsync();
        Assert.True(updates.Count >= 2);
        ChatResponseUpdate first = updates[0];
        Assert.StartsWith("duq-", first.ResponseId);
        Assert.NotNull(first.MessageId);
        Assert.NotNull(first.CreatedAt);
        foreach (ChatResponseUpdate u in updates)
        {
            Assert.Equal(first.ResponseId, u.ResponseId);
            Assert.Equal(first.MessageId, u.MessageId);
            Assert.Equal(first.CreatedAt, u.CreatedAt);
            Assert.Equal("tiny", u.ModelId);
            Assert.Equal(ChatRole.Assistant, u.Role);
        }

        Assert.All(updates[..^1], u => { Assert.Null(u.FinishReason); Assert.NotEmpty(u.Text); Assert.DoesNotContain(u.Contents, c => c is UsageContent); });
        ChatResponseUpdate last = updates[^1];
        Assert.Equal(ChatFinishReason.Length, last.FinishReason);
        UsageDetails usage = Assert.IsType<UsageContent>(Assert.Single(last.Contents)).Details;
        Assert.Equal(8, usage.OutputTokenCount);
        Assert.Equal(usage.InputTokenCount + usage.OutputTokenCount, usage.TotalTokenCount);
        Assert.True(usage.AdditionalCounts!.ContainsKey("duquant.ttft_ms"));
        Assert.IsType<DuQuantCompletion>(last.RawRepresentation);

        // A second request gets new ids.
        List<ChatResponseUpdate> again = await client.GetStreamingResponseAsync(Chat.User("Hi"), new() { MaxOutputTokens = 2 }, TestContext.Current.CancellationToken).CollectAsync();
        Assert.NotEqual(first.ResponseId, again[0].ResponseId);
        Assert.NotEqual(first.MessageId, again[0].MessageId);
    }

    [Fact]
    public async Task EmojiAndCjkSurviveStreamingWhenTheirBytesAreSplitAcrossTokens()
    {
        const string text = "Family 👩‍👩‍👧‍👦 says 你好，世界 and 🎉🦀 — naïve café ✓";
        IReadOnlyList<int> script = llama.Tokenizer.Encode(text);
        Assert.Contains(script, id => !IsCompleteUtf8(llama.Tokenizer.GetTokenBytes(id)));
        var engine = new InstrumentedEngine(llama.Engine) { Script = script, ThenForce = llama.Special("<|eot_id|>") };
        using DuQuantChatClient client = llama.Client(engine: engine);
        List<ChatResponseUpdate> updates = await client.GetStreamingResponseAsync(Chat.User("Say it"), new() { MaxOutputTokens = 100, Temperature = 0 }, TestContext.Current.CancellationToken).CollectAsync();
        var pieces = updates.Select(u => u.Text).Where(t => t.Length > 0).ToList();
        Assert.All(pieces, p => Assert.DoesNotContain('\uFFFD', p));
        Assert.All(pieces, p => Assert.False(char.IsHighSurrogate(p[^1]), $"piece '{p}' ends inside a surrogate pair"));
        Assert.True(pieces.Count < script.Count, "split characters must be held until complete");
        Assert.Equal(text, string.Concat(pieces));
        Assert.Equal(ChatFinishReason.Stop, updates[^1].FinishReason);
    }

    [Fact]
    public async Task ToChatResponseAsyncOfTheStreamEqualsGetResponseAsync()
    {
        using DuQuantChatClient client = stories.Client();
        var options = new ChatOptions { Temperature = 0.9f, Seed = 11, MaxOutputTokens = 30 };
        CancellationToken ct = TestContext.Current.CancellationToken;
        ChatResponse streamed = await client.GetStreamingResponseAsync(Chat.User("Once upon a time"), options, ct).ToChatResponseAsync(ct);
        ChatResponse direct = await client.GetResponseAsync(Chat.User("Once upon a time"), options, ct);
        Assert.Equal(direct.Text, streamed.Text);
        Assert.True(direct.Text.Length > 20);
        Assert.Equal(direct.FinishReason, streamed.FinishReason);
        Assert.Equal(direct.ModelId, streamed.ModelId);
        Assert.Equal(direct.Usage!.InputTokenCount, streamed.Usage!.InputTokenCount);
        Assert.Equal(direct.Usage.OutputTokenCount, streamed.Usage.OutputTokenCount);
        Assert.Equal(direct.Usage.TotalTokenCount, streamed.Usage.TotalTokenCount);
        Assert.Equal(direct.Messages.Count, streamed.Messages.Count);
        Assert.Equal(ChatRole.Assistant, Assert.Single(direct.Messages).Role);
        Assert.Equal(direct.Messages[0].Text, streamed.Messages[0].Text);
        Assert.NotNull(direct.ResponseId);
        Assert.NotNull(direct.CreatedAt);
        Assert.NotNull(direct.Messages[0].MessageId);
    }

    [Fact]
    public async Task UsageCountsEqualTheTokenizersCounts()
    {
        CancellationToken ct = TestContext.Current.CancellationToken;
        const string story = "Once upon a time there was a little dog";
        using (DuQuantChatClient client = stories.Client())
        {
            ChatResponse r = await client.GetResponseAsync(Chat.User(story), new() { MaxOutputTokens = 25, Temperature = 0 }, ct);
            Assert.Equal(1 + stories.Tokenizer.CountTokens(story), r.Usage!.InputTokenCount);
            DuQuantCompletion c = r.Completion();
            Assert.Equal(c.OutputTokenIds.Count, r.Usage.OutputTokenCount);
            Assert.Equal(stories.Tokenizer.Decode(c.OutputTokenIds), r.Text);
        }

        using (DuQuantChatClient client = llama.Client())
        {
            const string question = "What is MXFP4, briefly?";
            ChatResponse r = await client.GetResponseAsync(Chat.User(question), new() { MaxOutputTokens = 9, Temperature = 0 }, ct);
            int expected = 1                                                       // <|begin_of_text|>
                + 3 + llama.Tokenizer.CountTokens("user") - 1 + llama.Tokenizer.CountTokens("\n\n" + question) + 1   // header, text, <|eot_id|>
                + 3 + llama.Tokenizer.CountTokens("assistant") - 1 + llama.Tokenizer.CountTokens("\n\n");           // reply header
            Assert.Equal(expected, r.Usage!.InputTokenCount);
            Assert.Equal(9, r.Usage.OutputTokenCount);
            Assert.Equal(llama.Tokenizer.Decode(r.Completion().OutputTokenIds), r.Text);
        }
    }

    private static bool IsCompleteUtf8(ReadOnlySpan<byte> bytes)
    {
        try
        {
            _ = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes);
            return true;
        }
        catch (DecoderFallbackException)
        {
            return false;
        }
    }
}
