using LocalMxfp4.ChatClient.Templates;
using LocalMxfp4.Engine.Contract;
using LocalMxfp4.Tokenization;
using Microsoft.Extensions.AI;

namespace LocalMxfp4.ChatClient.Tests;

public class ContextAndServiceTests(Stories260KModel stories, TinyLlama3Model llama)
{
    private static readonly string Long = string.Join(' ', Enumerable.Repeat("The little dog ran to the big red ball.", 12));

    [Fact]
    public async Task APromptThatDoesNotFitIsATypedErrorWithTheCounts()
    {
        using DuQuantChatClient client = stories.Client(o => o.ContextLength = 64);
        var e = await Assert.ThrowsAsync<DuQuantContextOverflowException>(() => client.GetResponseAsync(Chat.User(Long), cancellationToken: TestContext.Current.CancellationToken));
        Assert.Equal(1 + stories.Tokenizer.CountTokens(Long), e.PromptTokens);
        Assert.Equal(64, e.ContextLength);
        Assert.Equal(512, e.ModelMaxPositions);
        Assert.Contains($"{e.PromptTokens} tokens", e.Message);
        Assert.Contains("DropOldestMessages", e.Message);
        Assert.Contains("up to 512", e.Message);
    }

    [Fact]
    public async Task TheDropPolicyRemovesTheOldestTurnsButKeepsSystemAndLast()
    {
        using DuQuantChatClient client = stories.Client(o => { o.ContextLength = 64; o.ContextOverflowPolicy = ContextOverflowPolicy.DropOldestMessages; });
        List<ChatMessage> history =
        [
            new(ChatRole.System, "Tell a story."),
            new(ChatRole.User, Long[..250]),
            new(ChatRole.Assistant, Long[..250]),
            new(ChatRole.User, "Once upon a time"),
        ];
        ChatResponse r = await client.GetResponseAsync(history, new() { MaxOutputTokens = 5, Temperature = 0 }, TestContext.Current.CancellationToken);
        DuQuantCompletion c = r.Completion();
        Assert.Equal(2, c.DroppedMessages);
        Assert.Equal(2, r.AdditionalProperties!["duquant.dropped_messages"]);
        Assert.Equal([1, .. stories.Tokenizer.Encode("Tell a story.\nOnce upon a time")], c.PromptTokenIds);
        Assert.Equal(4, history.Count);   // the caller's list is untouched

        var tooLong = await Assert.ThrowsAsync<DuQuantContextOverflowException>(() =>
            client.GetResponseAsync([new(ChatRole.System, "Tell a story."), new(ChatRole.User, Long)], cancellationToken: TestContext.Current.CancellationToken));
        Assert.Contains("last message", tooLong.Message);
    }

    [Fact]
    public async Task TheDropPolicyRemovesAToolCallTogetherWithItsResult()
    {
        using DuQuantChatClient client = stories.Client(o => { o.ContextLength = 64; o.ContextOverflowPolicy = ContextOverflowPolicy.DropOldestMessages; });
        List<ChatMessage> history =
        [
            new(ChatRole.Assistant, [new FunctionCallContent("c1", "lookup", new Dictionary<string, object?> { ["q"] = Long[..200] })]),
            new(ChatRole.Tool, [new FunctionResultContent("c1", Long[..40])]),
            new(ChatRole.User, "Once upon a time"),
        ];
        ChatResponse r = await client.GetResponseAsync(history, new() { MaxOutputTokens = 5, Temperature = 0 }, TestContext.Current.CancellationToken);

        // Dropping the call alone would have fitted; its result must go with it.
        Assert.Equal(2, r.Completion().DroppedMessages);
    }

    [Fact]
    public void GetServiceExposesMetadataEngineTokenizerAndBackend()
    {
        using DuQuantChatClient client = llama.Client(o => o.ModelId = "tiny");
        ChatClientMetadata metadata = client.GetService<ChatClientMetadata>()!;
        Assert.Equal("duquant", metadata.ProviderName);
        Assert.Equal("tiny", metadata.DefaultModelId);
        Assert.Equal(new Uri(llama.Directory).AbsolutePath.TrimEnd('/'), metadata.ProviderUri!.AbsolutePath.TrimEnd('/'));
        Assert.Same(client, client.GetService<DuQuantChatClient>());
        Assert.Same(client, client.GetService<IChatClient>());
        Assert.Same(llama.Engine, client.GetService<IInferenceEngine>());
        Assert.Same(llama.Tokenizer, client.GetService<LlmTokenizer>());
        Assert.IsType<Llama3ChatTemplate>(client.GetService<IChatTemplate>());
        DuQuantBackendInfo info = client.GetService<DuQuantBackendInfo>()!;
        Assert.Equal("cpu", info.Backend);
        Assert.Equal(512, info.ContextLength);
        Assert.True(info.IsChatModel);
        Assert.Null(client.GetService<ChatClientMetadata>("some key"));
        Assert.Null(client.GetService<string>());
    }

    [Fact]
    public void AClientOverStoriesSaysItIsNotAChatModel()
    {
        using DuQuantChatClient client = stories.Client();
        DuQuantBackendInfo info = client.GetService<DuQuantBackendInfo>()!;
        Assert.False(info.IsChatModel);
        Assert.Equal("plain-text", info.ChatTemplate);
        Assert.Equal("stories260K", client.ModelId);
    }
}
