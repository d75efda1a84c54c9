using Microsoft.Extensions.AI;

namespace LocalMxfp4.ChatClient.Tests;

/// <summary>Every ChatOptions field DuQuantChatClient honours has an observable effect.</summary>
public class ChatOptionsTests(TinyLlama3Model llama, Stories260KModel stories)
{
    private static readonly List<ChatMessage> Prompt = Chat.User("Tell me about the sea.");

    private async Task<DuQuantCompletion> RunAsync(ChatOptions options, Action<DuQuantChatClientOptions>? configure = null, List<ChatMessage>? messages = null)
    {
        using DuQuantChatClient client = llama.Client(configure);
        ChatResponse response = await client.GetResponseAsync(messages ?? Prompt, options, TestContext.Current.CancellationToken);
        return response.Completion();
    }

    // Sampling tests run on stories260K: its 512-token vocabulary keeps the sampler's full sort cheap.
    [Fact]
    public async Task TemperatureZeroIsGreedyWhateverTheSeed()
    {
        DuQuantCompletion a = await StoryAsync(new() { Temperature = 0, Seed = 1, MaxOutputTokens = 12 });
        DuQuantCompletion b = await StoryAsync(new() { Temperature = 0, Seed = 2, MaxOutputTokens = 12 });
        DuQuantCompletion hot1 = await StoryAsync(new() { Temperature = 1.5f, Seed = 1, MaxOutputTokens = 12 });
        DuQuantCompletion hot2 = await StoryAsync(new() { Temperature = 1.5f, Seed = 2, MaxOutputTokens = 12 });
        Assert.Equal(a.OutputTokenIds, b.OutputTokenIds);
        Assert.NotEqual(hot1.OutputTokenIds, hot2.OutputTokenIds);
        Assert.NotEqual(a.OutputTokenIds, hot1.OutputTokenIds);
    }

    [Fact]
    public async Task SeedMakesSamplingRepeatable()
    {
        DuQuantCompletion a = await StoryAsync(new() { Temperature = 1, Seed = 7, MaxOutputTokens = 12 });
        DuQuantCompletion b = await StoryAsync(new() { Temperature = 1, Seed = 7, MaxOutputTokens = 12 });
        DuQuantCompletion c = await StoryAsync(new() { Temperature = 1, Seed = 8, MaxOutputTokens = 12 });
        DuQuantCompletion big = await StoryAsync(new() { Temperature = 1, Seed = 7L + (1L << 40), MaxOutputTokens = 12 });
        Assert.Equal(a.OutputTokenIds, b.OutputTokenIds);
        Assert.NotEqual(a.OutputTokenIds, c.OutputTokenIds);
        Assert.NotEqual(a.OutputTokenIds, big.OutputTokenIds);
    }

    [Fact]
    public async Task TopKOfOneAndATinyTopPAreGreedy()
    {
        DuQuantCompletion greedy = await StoryAsync(new() { Temperature = 0, MaxOutputTokens = 12 });
        DuQuantCompletion topK = await StoryAsync(new() { Temperature = 2, TopK = 1, Seed = 3, MaxOutputTokens = 12 });
        DuQuantCompletion topP = await StoryAsync(new() { Temperature = 2, TopP = 1e-6f, Seed = 3, MaxOutputTokens = 12 });
        DuQuantCompletion open = await StoryAsync(new() { Temperature = 2, Seed = 3, MaxOutputTokens = 12 });
        Assert.Equal(greedy.OutputTokenIds, topK.OutputTokenIds);
        Assert.Equal(greedy.OutputTokenIds, topP.OutputTokenIds);
        Assert.NotEqual(greedy.OutputTokenIds, open.OutputTokenIds);
    }

    [Fact]
    public async Task MaxOutputTokensLimitsTheReplyAndReportsLength()
    {
        using DuQuantChatClient client = llama.Client();
        ChatResponse response = await client.GetResponseAsync(Prompt, new() { Temperature = 0, MaxOutputTokens = 5 }, TestContext.Current.CancellationToken);
        Assert.Equal(5, response.Usage!.OutputTokenCount);
        Assert.Equal(ChatFinishReason.Length, response.FinishReason);
    }

    [Fact]
    public async Task MaxOutputTokensDefaultsFromOptionsAndIsClampedToTheContextLeft()
    {
        DuQuantCompletion byDefault = await RunAsync(new() { Temperature = 0 }, o => o.DefaultMaxOutputTokens = 7);
        Assert.Equal(7, byDefault.OutputTokenIds.Count);

        DuQuantCompletion clamped = await RunAsync(new() { Temperature = 0, MaxOutputTokens = 100_000 }, o => { o.ContextLength = 40; o.DefaultMaxOutputTokens = 8; });
        Assert.Equal(40, clamped.PromptTokenIds.Count + clamped.OutputTokenIds.Count);
        Assert.Equal(ChatFinishReason.Length, clamped.FinishReason);
    }

    private async Task<DuQuantCompletion> StoryAsync(ChatOptions options)
    {
        // The trained story model repeats common tokens (" the", ".") when greedy, so penalties visibly change it.
        using DuQuantChatClient client = stories.Client();
        ChatResponse response = await client.GetResponseAsync(Chat.User("Once upon a time"), options, TestContext.Current.CancellationToken);
        return response.Completion();
    }

    [Fact]
    public async Task FrequencyAndPresencePenaltiesStopRepeats()
    {
        var plain = new ChatOptions { Temperature = 0, MaxOutputTokens = 40, AdditionalProperties = new() { ["penalty_window"] = 0 } };
        DuQuantCompletion free = await StoryAsync(plain);
        Assert.True(free.OutputTokenIds.Distinct().Count() < free.OutputTokenIds.Count, "the unpenalised greedy reply should repeat tokens");

        ChatOptions frequency = plain.Clone();
        frequency.FrequencyPenalty = 100;
        DuQuantCompletion f = await StoryAsync(frequency);
        Assert.Equal(f.OutputTokenIds.Count, f.OutputTokenIds.Distinct().Count());

        ChatOptions presence = plain.Clone();
        presence.PresencePenalty = 100;
        DuQuantCompletion p = await StoryAsync(presence);
        Assert.Equal(p.OutputTokenIds.Count, p.OutputTokenIds.Distinct().Count());

        // A small penalty already changes the greedy path.
        ChatOptions mild = plain.Clone();
        mild.FrequencyPenalty = 1.5f;
        Assert.NotEqual(free.OutputTokenIds, (await StoryAsync(mild)).OutputTokenIds);
    }

    [Fact]
    public async Task AdditionalPropertiesReachTheDocumentedExtras()
    {
        DuQuantCompletion free = await StoryAsync(new() { Temperature = 0, MaxOutputTokens = 40 });
        DuQuantCompletion repetition = await StoryAsync(new()
        {
            Temperature = 0,
            MaxOutputTokens = 40,
            AdditionalProperties = new() { ["repetition_penalty"] = 50.0, ["penalty_window"] = "0", ["some_other_provider_key"] = true },
        });
        Assert.NotEqual(free.OutputTokenIds, repetition.OutputTokenIds);
        Assert.True(repetition.OutputTokenIds.Distinct().Count() > free.OutputTokenIds.Distinct().Count());

        using DuQuantChatClient client = llama.Client();
        var bad = await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync(Prompt,
            new() { AdditionalProperties = new() { ["penalty_window"] = -3 } }, TestContext.Current.CancellationToken));
        Assert.Contains("penalty_window", bad.Message);
    }

    [Fact]
    public async Task RawRepresentationFactoryGivesOurSettingsAndTypedFieldsOverrideThem()
    {
        DuQuantCompletion greedy = await RunAsync(new() { Temperature = 0, MaxOutputTokens = 6 });
        var settings = new DuQuantGenerationSettings { Temperature = 0, MaxOutputTokens = 3, Seed = 99 };
        DuQuantCompletion fromSettings = await RunAsync(new() { RawRepresentationFactory = _ => settings });
        Assert.Equal(greedy.OutputTokenIds.Take(3), fromSettings.OutputTokenIds);

        DuQuantCompletion overridden = await RunAsync(new() { RawRepresentationFactory = _ => settings, MaxOutputTokens = 6 });
        Assert.Equal(greedy.OutputTokenIds, overridden.OutputTokenIds);
    }

    [Fact]
    public async Task InstructionsJoinTheSystemPrompt()
    {
        using DuQuantChatClient client = llama.Client();
        ChatResponse without = await client.GetResponseAsync(Prompt, new() { MaxOutputTokens = 1 }, TestContext.Current.CancellationToken);
        ChatResponse with = await client.GetResponseAsync(Prompt, new() { MaxOutputTokens = 1, Instructions = "Answer in French." }, TestContext.Current.CancellationToken);
        int systemTurn = 3 + llama.Tokenizer.CountTokens("\n\nAnswer in French.") + 1; // header (3 ids), text, <|eot_id|>
        Assert.Equal(without.Usage!.InputTokenCount + systemTurn, with.Usage!.InputTokenCount);
        Assert.Contains("system<|end_header_id|>\n\nAnswer in French.<|eot_id|>", llama.Tokenizer.Decode(with.Completion().PromptTokenIds, skipSpecialTokens: false));
    }

    [Fact]
    public async Task ModelIdMustNameTheLoadedModel()
    {
        using DuQuantChatClient client = llama.Client(o => o.ModelId = "tiny-llama3");
        ChatResponse ok = await client.GetResponseAsync(Prompt, new() { ModelId = "TINY-llama3", MaxOutputTokens = 1 }, TestContext.Current.CancellationToken);
        Assert.Equal("tiny-llama3", ok.ModelId);
        var wrong = await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync(Prompt, new() { ModelId = "gpt-4o" }, TestContext.Current.CancellationToken));
        Assert.Contains("gpt-4o", wrong.Message);
        Assert.Contains("tiny-llama3", wrong.Message);
    }

    [Fact]
    public async Task EndOfTurnAlwaysStopsEvenWithOtherStopSequences()
    {
        var engine = new InstrumentedEngine(llama.Engine) { Script = llama.Tokenizer.Encode("Hello there"), ThenForce = llama.Special("<|eot_id|>") };
        using DuQuantChatClient client = llama.Client(engine: engine);
        ChatResponse r = await client.GetResponseAsync(Prompt, new() { StopSequences = ["never appears"], MaxOutputTokens = 50 }, TestContext.Current.CancellationToken);
        Assert.Equal("Hello there", r.Text);
        Assert.Equal(ChatFinishReason.Stop, r.FinishReason);
        Assert.Equal(llama.Special("<|eot_id|>"), r.Completion().OutputTokenIds[^1]);

        var storyEngine = new InstrumentedEngine(stories.Engine) { Script = stories.Tokenizer.Encode("The end."), ThenForce = 2 };
        using DuQuantChatClient storyClient = stories.Client(engine: storyEngine);
        ChatResponse s = await storyClient.GetResponseAsync(Chat.User("Once"), new() { MaxOutputTokens = 50 }, TestContext.Current.CancellationToken);
        Assert.Equal(" The end.", s.Text);
        Assert.Equal(ChatFinishReason.Stop, s.FinishReason);
    }

    [Fact]
    public async Task ToolsAModelCannotUseAreReportedAndContinuationTokensAreTypedErrors()
    {
        CancellationToken ct = TestContext.Current.CancellationToken;
        using DuQuantChatClient client = llama.Client();
        var continuation = await Assert.ThrowsAsync<NotSupportedException>(() => client.GetResponseAsync(
            Prompt, new() { ContinuationToken = ResponseContinuationToken.FromBytes(new byte[] { 1 }) }, ct));
        Assert.Contains("ContinuationToken", continuation.Message);

        // A hosted tool runs on a provider's servers; a local model cannot call it.
        ChatResponse hosted = await client.GetResponseAsync(Prompt, new() { Tools = [new HostedWebSearchTool()], MaxOutputTokens = 3 }, ct);
        Assert.Equal(1, hosted.AdditionalProperties!["duquant.ignored_tools"]);
        Assert.True(client.GetService<DuQuantBackendInfo>()!.SupportsToolCalling);
    }

    [Theory]
    [InlineData("temperature")]
    [InlineData("top_p")]
    [InlineData("max_tokens")]
    [InlineData("stop")]
    public async Task InvalidValuesAreArgumentErrorsNamingTheSetting(string which)
    {
        using DuQuantChatClient client = llama.Client();
        ChatOptions options = which switch
        {
            "temperature" => new() { Temperature = -1 },
            "top_p" => new() { TopP = 0 },
            "max_tokens" => new() { MaxOutputTokens = 0 },
            _ => new() { StopSequences = [""] },
        };
        var e = await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync(Prompt, options, TestContext.Current.CancellationToken));
        Assert.Contains(which switch { "temperature" => "Temperature", "top_p" => "TopP", "max_tokens" => "MaxOutputTokens", _ => "StopSequences" }, e.Message);
    }
}
