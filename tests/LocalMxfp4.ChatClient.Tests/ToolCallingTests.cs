using System.ComponentModel;
using System.Text.Json;
using LocalMxfp4.ChatClient.Templates;
using Microsoft.Extensions.AI;

namespace LocalMxfp4.ChatClient.Tests;

/// <summary>Tool calling end to end on the tiny models, which cannot call tools on their own.</summary>
public class ToolCallingTests(TinyLlama3Model llama, Stories260KModel stories)
{
    public enum Unit
    {
        Celsius,
        Fahrenheit,
    }

    private static readonly AIFunction Weather = AIFunctionFactory.Create(
        ([Description("City name")] string city, [Description("Days ahead, 0-6")] int days, Unit unit = Unit.Celsius) => $"{city}: sunny for {days} days, 21 {unit}",
        "get_weather", "Gets the weather forecast for a city.");

    private static readonly AIFunction Note = AIFunctionFactory.Create(
        (string text, bool pinned) => $"saved '{text}'{(pinned ? " (pinned)" : "")}", "add_note", "Saves a note.");

    private static readonly AIFunction Clock = AIFunctionFactory.Create(() => "12:00", "get_time", "Gets the time.");

    private static List<FunctionCallContent> Calls(ChatResponse response) => [.. response.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>()];

    private static void AssertValidCall(FunctionCallContent call, params AIFunction[] tools)
    {
        AIFunction tool = Assert.Single(tools, t => t.Name == call.Name);
        JsonElement arguments = JsonSerializer.SerializeToElement(call.Arguments, AIJsonUtilities.DefaultOptions);
        Assert.True(SchemaValidator.Check(tool.JsonSchema, arguments) is null, $"{call.Name}({arguments}): {SchemaValidator.Check(tool.JsonSchema, arguments)}");
    }

    /// <summary>
    /// 100 seeds on stories260K (fast), and a few on the LLaMA-3 fixture with its real 128k vocabulary (each of its
    /// tokens costs a 128k-row output layer in a Debug build). Random weights never end a string on their own: the
    /// token budget of the mask closes every value in time.
    /// </summary>
    [Theory]
    [InlineData("stories", 100)]
    [InlineData("llama", 8)]
    public async Task RequireAnyYieldsASchemaValidCallForEverySeed(string model, int seeds)
    {
        using DuQuantChatClient client = model == "llama" ? llama.Client() : stories.Client();
        AIFunction[] tools = [Weather, Note, Clock];
        var names = new HashSet<string>();
        for (int seed = 0; seed < seeds; seed++)
        {
            ChatResponse response = await client.GetResponseAsync(
                Chat.User("What's the weather in Paris this week?"),
                new() { Tools = [.. tools], ToolMode = ChatToolMode.RequireAny, Seed = seed, Temperature = 1, TopP = 1, MaxOutputTokens = 80 },
                TestContext.Current.CancellationToken);
            Assert.Equal(ChatFinishReason.ToolCalls, response.FinishReason);
            List<FunctionCallContent> calls = Calls(response);
            Assert.NotEmpty(calls);
            Assert.All(calls, c => AssertValidCall(c, tools));
            Assert.True(string.IsNullOrWhiteSpace(response.Text), response.Text);
            Assert.True(response.Completion().OutputTokenIds.Count <= 80);
            names.UnionWith(calls.Select(c => c.Name));
        }

        if (seeds >= 100)
        {
            Assert.True(names.Count >= 2, string.Join(", ", names));  // which tool is the model's choice, not the mask's
        }
    }

    [Fact]
    public async Task RequireSpecificAndSingleCallAreHonoured()
    {
        using DuQuantChatClient client = stories.Client();
        for (int seed = 0; seed < 8; seed++)
        {
            ChatResponse response = await client.GetResponseAsync(
                Chat.User("Remember to buy milk."),
                new()
                {
                    Tools = [Weather, Note], ToolMode = ChatToolMode.RequireSpecific("add_note"), AllowMultipleToolCalls = false,
                    Seed = seed, Temperature = 1, TopP = 1, MaxOutputTokens = 64,
                },
                TestContext.Current.CancellationToken);
            FunctionCallContent call = Assert.Single(Calls(response));
            Assert.Equal("add_note", call.Name);
            AssertValidCall(call, Note);
        }
    }

    [Fact]
    public async Task FunctionInvocationRunsTheCSharpFunctionAndFeedsItsResultBack()
    {
        var invoked = new List<(string City, int Days)>();
        AIFunction forecast = AIFunctionFactory.Create(
            (string city, int days) =>
            {
                invoked.Add((city, days));
                return $"Forecast for {city}: sunny, 21 degrees";
            },
            "get_forecast", "Gets the forecast.");
        var prompts = new List<List<ChatMessage>>();
        var completions = new List<DuQuantCompletion>();
        using DuQuantChatClient inner = llama.Client();
        using IChatClient client = inner.AsBuilder()
            .UseFunctionInvocation()
            .Use(async (messages, options, next, ct) =>
            {
                prompts.Add([.. messages]);
                await next(messages, options, ct);
            })
            .Build();

        ChatResponse response = await client.GetResponseAsync(
            Chat.User("Weather in Oslo?"),
            new() { Tools = [forecast], ToolMode = ChatToolMode.RequireAny, Seed = 3, Temperature = 1, TopP = 1, MaxOutputTokens = 64 },
            TestContext.Current.CancellationToken);

        // One call by the model, the C# function ran with its arguments, the result went back as a tool message.
        (string city, int days) = Assert.Single(invoked);
        FunctionCallContent call = Assert.Single(Calls(response));
        Assert.Equal(city, ((JsonElement)call.Arguments!["city"]!).GetString());
        Assert.Equal(days, ((JsonElement)call.Arguments["days"]!).GetInt32());
        FunctionResultContent result = Assert.Single(response.Messages.SelectMany(m => m.Contents).OfType<FunctionResultContent>());
        Assert.Equal(call.CallId, result.CallId);
        Assert.Equal(2, prompts.Count);
        ChatMessage toolMessage = prompts[1].Last();
        Assert.Equal(ChatRole.Tool, toolMessage.Role);

        // The second request rendered the call as an assistant turn and the result as an ipython turn.
        string second = llama.Tokenizer.Decode(new Llama3ChatTemplate().Render(prompts[1], null, [forecast], llama.Tokenizer), skipSpecialTokens: false);
        Assert.Contains("<|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"get_forecast\", \"parameters\": {", second);
        Assert.Contains($"<|start_header_id|>ipython<|end_header_id|>\n\n{{\"output\": \"Forecast for {city.Replace("\\", "\\\\").Replace("\"", "\\\"")}: sunny, 21 degrees\"}}<|eot_id|>", second);
        Assert.Equal(ChatRole.Assistant, response.Messages[^1].Role);
        Assert.NotEqual(ChatFinishReason.ToolCalls, response.FinishReason);
    }

    [Fact]
    public async Task StreamingEmitsACallWholeInOneUpdate()
    {
        using DuQuantChatClient client = llama.Client();
        List<ChatResponseUpdate> updates = await client.GetStreamingResponseAsync(
            Chat.User("Weather?"),
            new() { Tools = [Weather], ToolMode = ChatToolMode.RequireAny, Seed = 5, Temperature = 1, TopP = 1, MaxOutputTokens = 64 },
            TestContext.Current.CancellationToken).CollectAsync();
        ChatResponseUpdate withCall = Assert.Single(updates, u => u.Contents.OfType<FunctionCallContent>().Any());
        AssertValidCall(Assert.Single(withCall.Contents.OfType<FunctionCallContent>()), Weather);
        Assert.All(updates, u => Assert.DoesNotContain(u.Contents.OfType<TextContent>(), t => t.Text.Trim().Length > 0));
        Assert.Equal(ChatFinishReason.ToolCalls, updates[^1].FinishReason);
        Assert.Equal(ChatFinishReason.ToolCalls, (await client.GetStreamingResponseAsync(
            Chat.User("Weather?"),
            new() { Tools = [Weather], ToolMode = ChatToolMode.RequireAny, Seed = 5, Temperature = 1, TopP = 1, MaxOutputTokens = 64 },
            TestContext.Current.CancellationToken).ToChatResponseAsync(TestContext.Current.CancellationToken)).FinishReason);
    }

    [Fact]
    public async Task InAutoModeAModelsOwnCallIsParsedAndProseStaysText()
    {
        // The engine is scripted to "choose" the tokens of a call, as a tool-capable model would.
        var engine = new InstrumentedEngine(llama.Engine);
        using DuQuantChatClient client = llama.Client(engine: engine);
        int eot = llama.Special("<|eot_id|>"), pythonTag = llama.Special("<|python_tag|>");
        engine.Script = [pythonTag, .. llama.Tokenizer.Encode("{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Rome\", \"days\": 2}}")];
        engine.ThenForce = eot;
        List<ChatResponseUpdate> updates = await client.GetStreamingResponseAsync(
            Chat.User("Weather in Rome?"), new() { Tools = [Weather, Note], MaxOutputTokens = 60 }, TestContext.Current.CancellationToken).CollectAsync();
        ChatResponse response = updates.ToChatResponse();
        response.RawRepresentation = updates[^1].RawRepresentation;
        FunctionCallContent call = Assert.Single(Calls(response));
        Assert.Equal("Rome", ((JsonElement)call.Arguments!["city"]!).GetString());
        Assert.Equal(ChatFinishReason.ToolCalls, response.FinishReason);
        Assert.Equal("", response.Text);

        // The prompt offered the tools the LLaMA-3.1 way.
        string prompt = llama.Tokenizer.Decode(response.Completion().PromptTokenIds, skipSpecialTokens: false);
        Assert.Contains("Environment: ipython", prompt);
        Assert.Contains("Given the following functions", prompt);
        Assert.Contains("\"name\": \"get_weather\"", prompt);

        engine.Script = llama.Tokenizer.Encode("It is {\"sunny\": true} in Rome.");
        ChatResponse prose = await client.GetResponseAsync(Chat.User("Weather in Rome?"), new() { Tools = [Weather], MaxOutputTokens = 60 }, TestContext.Current.CancellationToken);
        Assert.Equal("It is {\"sunny\": true} in Rome.", prose.Text);
        Assert.Equal(ChatFinishReason.Stop, prose.FinishReason);

        // ToolMode None: the tools are not offered and the reply is never read as a call.
        engine.Script = llama.Tokenizer.Encode("{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Rome\", \"days\": 2}}");
        ChatResponse none = await client.GetResponseAsync(Chat.User("Weather in Rome?"), new() { Tools = [Weather], ToolMode = ChatToolMode.None, MaxOutputTokens = 60 }, TestContext.Current.CancellationToken);
        Assert.Empty(Calls(none));
        Assert.StartsWith("{\"name\"", none.Text);
        Assert.DoesNotContain("Given the following functions", llama.Tokenizer.Decode(none.Completion().PromptTokenIds));
    }

    [Fact]
    public void ToolsArePromptedInMetasFormatWithTheHistory()
    {
        var clock = new FixedClock(new DateTimeOffset(2024, 7, 26, 9, 0, 0, TimeSpan.Zero));
        List<ChatMessage> messages =
        [
            new(ChatRole.System, "Be brief."),
            new(ChatRole.User, "Weather in Oslo and Rome?"),
            new(ChatRole.Assistant, [new FunctionCallContent("a", "get_weather", new Dictionary<string, object?> { ["city"] = "Oslo" }), new FunctionCallContent("b", "get_weather", new Dictionary<string, object?> { ["city"] = "Rome" })]),
            new(ChatRole.Tool, [new FunctionResultContent("a", "rain"), new FunctionResultContent("b", "sun")]),
        ];
        string text = llama.Tokenizer.Decode(new Llama3ChatTemplate(clock).Render(messages, null, [Weather], llama.Tokenizer), skipSpecialTokens: false);
        Assert.StartsWith(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nBe brief.<|eot_id|>" +
            "<|start_header_id|>user<|end_header_id|>\n\nGiven the following functions, please respond with a JSON for a function call with its proper arguments that best answers the given prompt.\n\n" +
            "Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its value}. Do not use variables.\n\n" +
            "{\n    \"type\": \"function\",\n    \"function\": {\n        \"name\": \"get_weather\",\n        \"description\": \"Gets the weather forecast for a city.\",\n        \"parameters\": {",
            text);
        Assert.Contains("}\n\nWeather in Oslo and Rome?<|eot_id|>", text);
        Assert.Contains("<|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}; {\"name\": \"get_weather\", \"parameters\": {\"city\": \"Rome\"}}<|eot_id|>", text);
        Assert.Contains("<|start_header_id|>ipython<|end_header_id|>\n\n{\"output\": \"rain\"}<|eot_id|><|start_header_id|>ipython<|end_header_id|>\n\n{\"output\": \"sun\"}<|eot_id|>", text);
        Assert.EndsWith("<|start_header_id|>assistant<|end_header_id|>\n\n", text);
    }

    [Fact]
    public async Task TheStoryModelGetsNoToolPromptButCanBeMadeToCall()
    {
        using DuQuantChatClient client = stories.Client();
        ChatResponse auto = await client.GetResponseAsync(Chat.User("Once upon a time"), new() { Tools = [Note], MaxOutputTokens = 8 }, TestContext.Current.CancellationToken);
        Assert.Equal(1, auto.AdditionalProperties!["duquant.ignored_tools"]);
        Assert.Empty(Calls(auto));
        Assert.False(client.GetService<DuQuantBackendInfo>()!.SupportsToolCalling);

        for (int seed = 0; seed < 20; seed++)
        {
            ChatResponse forced = await client.GetResponseAsync(
                Chat.User("Once upon a time"),
                new() { Tools = [Note, Weather], ToolMode = ChatToolMode.RequireAny, Seed = seed, Temperature = 1, MaxOutputTokens = 72 },
                TestContext.Current.CancellationToken);
            Assert.Equal(ChatFinishReason.ToolCalls, forced.FinishReason);
            Assert.All(Calls(forced), c => AssertValidCall(c, Note, Weather));
        }
    }

    [Fact]
    public async Task InvalidToolRequestsAreArgumentErrors()
    {
        using DuQuantChatClient client = llama.Client();
        CancellationToken ct = TestContext.Current.CancellationToken;
        var none = await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync(Chat.User("x"), new() { ToolMode = ChatToolMode.RequireAny }, ct));
        Assert.Contains("no function", none.Message);
        var unknown = await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync(Chat.User("x"), new() { Tools = [Weather], ToolMode = ChatToolMode.RequireSpecific("fly") }, ct));
        Assert.Contains("'fly'", unknown.Message);
        var twice = await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync(Chat.User("x"), new() { Tools = [Weather, Weather] }, ct));
        Assert.Contains("get_weather", twice.Message);
        AIFunctionDeclaration patterned = AIFunctionFactory.CreateDeclaration("code", "x", JsonElement.Parse("""{"type":"object","properties":{"zip":{"type":"string","pattern":"^[0-9]{5}$"}}}"""));
        var schema = await Assert.ThrowsAsync<Constrained.JsonSchemaNotSupportedException>(() => client.GetResponseAsync(Chat.User("x"), new() { Tools = [patterned], ToolMode = ChatToolMode.RequireAny }, ct));
        Assert.Equal("pattern", schema.Keyword);
        Assert.Contains("tool 'code'", schema.Message);
    }

    private sealed class FixedClock(DateTimeOffset now) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => now;
    }
}
