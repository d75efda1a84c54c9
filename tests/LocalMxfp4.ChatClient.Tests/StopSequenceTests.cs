using Microsoft.Extensions.AI;

namespace LocalMxfp4.ChatClient.Tests;

/// <summary>Stop sequences end the reply wherever the token boundaries fall, and their text is never streamed.</summary>
public class StopSequenceTests(TinyLlama3Model llama, Stories260KModel stories)
{
    private const string Reply = "The answer is 42. Another line follows here.";

    private async Task<List<ChatResponseUpdate>> RunAsync(params string[] stops)
    {
        var engine = new InstrumentedEngine(llama.Engine) { Script = llama.Tokenizer.Encode(Reply), ThenForce = llama.Special("<|eot_id|>") };
        using DuQuantChatClient client = llama.Client(engine: engine);
        return await client.GetStreamingResponseAsync(Chat.User("Q"), new() { StopSequences = stops, MaxOutputTokens = 60 }, TestContext.Current.CancellationToken).CollectAsync();
    }

    [Fact]
    public async Task AStopSpanningSeveralTokensEndsTheReplyAndIsNeverEmitted()
    {
        const string stop = "swer is 4";
        IReadOnlyList<int> ids = llama.Tokenizer.Encode(Reply);
        string[] pieces = ids.Select(id => llama.Tokenizer.Decode([id])).ToArray();
        Assert.DoesNotContain(pieces, p => p.Contains(stop, StringComparison.Ordinal));   // it really crosses token boundaries

        List<ChatResponseUpdate> updates = await RunAsync(stop);
        string streamed = string.Concat(updates.Select(u => u.Text));
        Assert.Equal("The an", streamed);
        Assert.All(updates, u => Assert.DoesNotContain("sw", u.Text));
        Assert.Equal(ChatFinishReason.Stop, updates[^1].FinishReason);
        Assert.Equal(stop, Assert.IsType<DuQuantCompletion>(updates[^1].RawRepresentation).StopSequence);
    }

    [Fact]
    public async Task HeldBackTextIsReleasedWhenTheStopDoesNotComplete()
    {
        List<ChatResponseUpdate> updates = await RunAsync("is 43", ". Another line follows here!");
        Assert.Equal(Reply, string.Concat(updates.Select(u => u.Text)));
        Assert.Equal(ChatFinishReason.Stop, updates[^1].FinishReason);   // ended by <|eot_id|>
        Assert.Null(Assert.IsType<DuQuantCompletion>(updates[^1].RawRepresentation).StopSequence);
    }

    [Fact]
    public async Task TheEarliestOfSeveralStopsWinsOnARealModel()
    {
        using DuQuantChatClient client = stories.Client();
        CancellationToken ct = TestContext.Current.CancellationToken;
        ChatResponse full = await client.GetResponseAsync(Chat.User("Once upon a time"), new() { Temperature = 0, MaxOutputTokens = 60 }, ct);
        int cut = full.Text.IndexOf('.', StringComparison.Ordinal);
        Assert.True(cut > 0, full.Text);
        ChatResponse stopped = await client.GetResponseAsync(Chat.User("Once upon a time"), new() { Temperature = 0, MaxOutputTokens = 60, StopSequences = ["zzz", "."] }, ct);
        Assert.Equal(full.Text[..cut], stopped.Text);
        Assert.Equal(ChatFinishReason.Stop, stopped.FinishReason);
    }
}
