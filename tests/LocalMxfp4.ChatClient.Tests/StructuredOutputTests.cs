using System.Text.Json;
using LocalMxfp4.ChatClient.Constrained;
using Microsoft.Extensions.AI;

namespace LocalMxfp4.ChatClient.Tests;

/// <summary>JSON response formats and <c>GetResponseAsync&lt;T&gt;</c> on the tiny models.</summary>
public class StructuredOutputTests(TinyLlama3Model llama, Stories260KModel stories)
{
    public enum Mood
    {
        Happy,
        Grumpy,
        Sleepy,
    }

    public sealed record Weather(string City, double TemperatureC, bool Rain);

    public sealed record Person(string Name, int Age, Mood Mood, string? Nickname, List<string> Tags);

    public sealed record Item(string Sku, int Quantity);

    public sealed record Order(int Id, Item[] Items, DateTime PlacedAt, Guid Reference, decimal Total);

    private static ChatOptions Options(int seed, int maxTokens) => new() { Seed = seed, Temperature = 1, TopP = 1, MaxOutputTokens = maxTokens };

    private static async Task CheckAsync<T>(IChatClient client, int seeds, int maxTokens)
    {
        for (int seed = 0; seed < seeds; seed++)
        {
            ChatResponse<T> response = await client.GetResponseAsync<T>(
                "Tell me about it.", Options(seed, maxTokens), cancellationToken: TestContext.Current.CancellationToken);
            Assert.True(response.TryGetResult(out T? value), $"seed {seed}: '{response.Text}' is not a {typeof(T).Name}");
            Assert.NotNull(value);
            Assert.Equal(ChatFinishReason.Stop, response.FinishReason);
        }
    }

    [Fact]
    public async Task GetResponseAsyncOfTReturnsATForEverySeed()
    {
        using DuQuantChatClient client = stories.Client();
        // Budgets a little above each type's shortest JSON in bytes, so every reply must be complete in time.
        await CheckAsync<Weather>(client, 100, 48);
        await CheckAsync<Person>(client, 100, 72);
        await CheckAsync<Order>(client, 100, 128);
        await CheckAsync<int>(client, 20, 24);
    }

    [Fact]
    public async Task GetResponseAsyncOfTWorksWithTheLlama3Vocabulary()
    {
        using DuQuantChatClient client = llama.Client();
        await CheckAsync<Weather>(client, 3, 72);
        await CheckAsync<Person>(client, 2, 96);
    }

    [Fact]
    public async Task ASchemaValueValidatesAndTheChatModelIsToldTheSchema()
    {
        JsonElement schema = JsonElement.Parse("""
            {"type":"object","properties":{"answer":{"type":"string","maxLength":12},"confidence":{"type":"number","minimum":0,"maximum":1},
             "sources":{"type":"array","maxItems":2,"items":{"type":"string","format":"uuid"}}},"required":["answer","confidence"],"additionalProperties":false}
            """);
        using DuQuantChatClient client = llama.Client();
        for (int seed = 0; seed < 3; seed++)
        {
            ChatResponse response = await client.GetResponseAsync(
                Chat.User("Answer briefly."), new ChatOptions { ResponseFormat = ChatResponseFormat.ForJsonSchema(schema, "answer"), Seed = seed, Temperature = 1, TopP = 1, MaxOutputTokens = 64 },
                TestContext.Current.CancellationToken);
            Assert.Null(SchemaValidator.Check(schema, JsonElement.Parse(response.Text)));
            string prompt = llama.Tokenizer.Decode(response.Completion().PromptTokenIds);
            Assert.Contains("It must conform to the JSON schema \"answer\":", prompt);
        }
    }

    [Fact]
    public async Task JsonFormatGivesOneJsonValue()
    {
        using DuQuantChatClient story = stories.Client();
        using DuQuantChatClient chat = llama.Client();
        for (int seed = 0; seed < 20; seed++)
        {
            ChatResponse response = await story.GetResponseAsync(Chat.User("Once upon a time"), new ChatOptions { ResponseFormat = ChatResponseFormat.Json, Seed = seed, Temperature = 1, MaxOutputTokens = 48 }, TestContext.Current.CancellationToken);
            using var _ = JsonDocument.Parse(response.Text);
        }

        ChatResponse llamaJson = await chat.GetResponseAsync(Chat.User("Hi"), new ChatOptions { ResponseFormat = ChatResponseFormat.Json, Seed = 1, Temperature = 1, TopP = 1, MaxOutputTokens = 32 }, TestContext.Current.CancellationToken);
        using var doc = JsonDocument.Parse(llamaJson.Text);
        Assert.Contains("Reply with a single JSON value and nothing else.", llama.Tokenizer.Decode(llamaJson.Completion().PromptTokenIds));
        Assert.True(chat.GetService<DuQuantBackendInfo>()!.SupportsJsonResponseFormat);
    }

    [Fact]
    public async Task UnsupportedSchemasFailBeforeGenerating()
    {
        using DuQuantChatClient client = llama.Client();
        var e = await Assert.ThrowsAsync<JsonSchemaNotSupportedException>(() => client.GetResponseAsync<TimeSpanHolder>(
            "x", new ChatOptions(), cancellationToken: TestContext.Current.CancellationToken));
        Assert.Equal("pattern", e.Keyword);
        Assert.Equal("#/properties/duration", e.SchemaPath);
        Assert.Equal(0, client.RunningRequests);
    }

    public sealed record TimeSpanHolder(TimeSpan Duration);
}
