using System.Diagnostics;
using System.Diagnostics.Metrics;
using LocalMxfp4.ChatClient.Telemetry;
using LocalMxfp4.Engine.Loading;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using Microsoft.Extensions.Options;
using Microsoft.SemanticKernel;
using Microsoft.SemanticKernel.ChatCompletion;

namespace LocalMxfp4.ChatClient.Tests;

/// <summary>DI registration, validation at start, warm-up, telemetry, and Semantic Kernel over the client.</summary>
public class HostingTests(TinyLlama3Model llama)
{
    private static string Stories => Stories260KModel.Directory;

    private static HostApplicationBuilder Builder(Dictionary<string, string?>? config = null)
    {
        HostApplicationBuilder builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Configuration.AddInMemoryCollection(config ?? []);
        builder.Services.AddFakeLogging();
        return builder;
    }

    public static TheoryData<string, string> InvalidOptions => new()
    {
        { "missing", "does not exist" },
        { "no-path", "ModelPath is not set" },
        { "context-zero", "ContextLength 0 is too small" },
        { "context-too-big", "exceeds the model's max_position_embeddings (512)" },
        { "backend", "Backend '42' is unknown" },
        { "slots", "MaxConcurrentRequests 0" },
        { "temperature", "Temperature -1" },
        { "device", "Device -1 must be a CUDA device ordinal" },
    };

    [Theory]
    [MemberData(nameof(InvalidOptions))]
    public async Task InvalidOptionsStopTheHostAtStartWithAnActionableMessage(string which, string expected)
    {
        HostApplicationBuilder builder = Builder();
        builder.Services.AddDuQuantChatClient(o =>
        {
            o.ModelPath = Stories;
            switch (which)
            {
                case "missing": o.ModelPath = "/nonexistent/model-dir"; break;
                case "no-path": o.ModelPath = null; break;
                case "context-zero": o.ContextLength = 0; break;
                case "context-too-big": o.ContextLength = 100_000; break;
                case "backend": o.Backend = (EngineBackend)42; break;
                case "slots": o.MaxConcurrentRequests = 0; break;
                case "temperature": o.Temperature = -1; break;
                case "device": o.Device = -1; break;
            }
        });
        using IHost host = builder.Build();
        var e = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync(TestContext.Current.CancellationToken));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public async Task WarmUpLoadsTheModelAtStartAndLogsLoadTimeAndFirstToken()
    {
        HostApplicationBuilder builder = Builder();
        builder.Services.AddDuQuantChatClient(o => o.ModelPath = Stories);
        builder.Services.AddKeyedDuQuantChatClient("lazy", o => { o.ModelPath = Stories; o.WarmUpOnStart = false; });
        using IHost host = builder.Build();
        await host.StartAsync(TestContext.Current.CancellationToken);

        Assert.True(host.Services.GetRequiredService<DuQuantChatClient>().IsLoaded);
        Assert.False(host.Services.GetRequiredKeyedService<DuQuantChatClient>("lazy").IsLoaded);
        FakeLogCollector logs = host.Services.GetFakeLogCollector();
        Assert.Contains(logs.GetSnapshot(), r => r.Id.Id == 2 && r.Message.Contains("Loaded model stories260K", StringComparison.Ordinal) && r.Message.Contains(" s: cpu float32", StringComparison.Ordinal));
        Assert.Contains(logs.GetSnapshot(), r => r.Id.Id == 4 && r.Message.Contains("time to first token", StringComparison.Ordinal));
        Assert.Contains(logs.GetSnapshot(), r => r.Id.Id == 5 && r.Level == LogLevel.Information);
        await host.StopAsync(TestContext.Current.CancellationToken);
    }

    [Fact]
    public async Task ConfigurationBindingKeyedClientsAndDisposalThroughTheContainer()
    {
        HostApplicationBuilder builder = Builder(new()
        {
            ["DuQuant:ModelPath"] = Stories,
            ["DuQuant:ContextLength"] = "128",
            ["DuQuant:ModelId"] = "story-model",
            ["DuQuant:WarmUpOnStart"] = "false",
            ["DuQuant:ContextOverflowPolicy"] = "DropOldestMessages",
            ["DuQuant:Device"] = "1",
            ["Llama:ModelPath"] = llama.Directory,
            ["Llama:WarmUpOnStart"] = "false",
        });
        builder.Services.AddDuQuantChatClient(builder.Configuration.GetSection("DuQuant")).UseLogging();
        builder.Services.AddKeyedDuQuantChatClient("llama", builder.Configuration.GetSection("Llama"), o => o.ContextLength = 64);
        IHost host = builder.Build();
        await host.StartAsync(TestContext.Current.CancellationToken);

        IChatClient story = host.Services.GetRequiredService<IChatClient>();
        IChatClient keyed = host.Services.GetRequiredKeyedService<IChatClient>("llama");
        Assert.Equal("story-model", story.GetService<ChatClientMetadata>()!.DefaultModelId);
        Assert.Equal(128, story.GetService<DuQuantBackendInfo>()!.ContextLength);
        Assert.Equal(ContextOverflowPolicy.DropOldestMessages, story.GetService<DuQuantChatClientOptions>()!.ContextOverflowPolicy);
        Assert.Equal(1, story.GetService<DuQuantChatClientOptions>()!.Device);
        Assert.Equal(64, keyed.GetService<DuQuantBackendInfo>()!.ContextLength);
        Assert.True(keyed.GetService<DuQuantBackendInfo>()!.IsChatModel);
        ChatResponse reply = await story.GetResponseAsync("Once upon a time", new() { MaxOutputTokens = 5 }, TestContext.Current.CancellationToken);
        Assert.Equal(5, reply.Usage!.OutputTokenCount);

        DuQuantChatClient inner = host.Services.GetRequiredService<DuQuantChatClient>();
        await host.StopAsync(TestContext.Current.CancellationToken);
        host.Dispose();   // disposes the pipeline (which disposes the client) and the client singleton: twice
        Assert.Throws<ObjectDisposedException>(() => inner.GetStreamingResponseAsync("x", cancellationToken: TestContext.Current.CancellationToken));
    }

    [Fact]
    public async Task FunctionInvocationPipelineAndASemanticKernelKernelReplyThroughTheClient()
    {
        HostApplicationBuilder builder = Builder();
        builder.Services.AddDuQuantChatClient(o => o.ModelPath = Stories).UseFunctionInvocation();
        builder.Services.AddChatCompletionServiceFromChatClient();
        builder.Services.AddKernel().Plugins.AddFromType<ClockPlugin>("clock");
        using IHost host = builder.Build();
        await host.StartAsync(TestContext.Current.CancellationToken);
        CancellationToken ct = TestContext.Current.CancellationToken;

        IChatClient client = host.Services.GetRequiredService<IChatClient>();
        Assert.IsType<FunctionInvokingChatClient>(client);
        ChatResponse direct = await client.GetResponseAsync("Once upon a time", new() { Temperature = 0, MaxOutputTokens = 20 }, ct);
        Assert.True(direct.Text.Length > 10);

        Kernel kernel = host.Services.GetRequiredService<Kernel>();
        var settings = new PromptExecutionSettings
        {
            FunctionChoiceBehavior = FunctionChoiceBehavior.Auto(),
            ExtensionData = new Dictionary<string, object> { ["temperature"] = 0.0, ["max_tokens"] = 20 },
        };
        FunctionResult viaKernel = await kernel.InvokePromptAsync("Once upon a time", new KernelArguments(settings), cancellationToken: ct);
        Assert.Equal(direct.Text, viaKernel.GetValue<string>());

        IChatCompletionService chat = host.Services.GetRequiredService<IChatCompletionService>();
        var history = new ChatHistory();
        history.AddUserMessage("Once upon a time");
        Microsoft.SemanticKernel.ChatMessageContent answer = await chat.GetChatMessageContentAsync(history, settings, kernel, ct);
        Assert.Equal(direct.Text, answer.Content);
        Assert.Equal("stories260K", answer.ModelId);
    }

    [Fact]
    public async Task TheKernelBuilderExtensionRegistersAChatCompletionService()
    {
        IKernelBuilder kb = Kernel.CreateBuilder();
        kb.Services.AddFakeLogging();
        kb.AddDuQuantChatCompletion(o => o.ModelPath = Stories, serviceId: "local");
        kb.Plugins.AddFromType<ClockPlugin>("clock");
        Kernel kernel = kb.Build();
        var settings = new PromptExecutionSettings { ServiceId = "local", FunctionChoiceBehavior = FunctionChoiceBehavior.Auto(), ExtensionData = new Dictionary<string, object> { ["max_tokens"] = 8 } };
        FunctionResult result = await kernel.InvokePromptAsync("The dog", new KernelArguments(settings), cancellationToken: TestContext.Current.CancellationToken);
        Assert.False(string.IsNullOrWhiteSpace(result.GetValue<string>()));
        Assert.NotNull(kernel.Services.GetRequiredKeyedService<IChatCompletionService>("local"));
    }

    [Fact]
    public async Task MetricsAndActivitiesFollowTheGenAiServerConventions()
    {
        HostApplicationBuilder builder = Builder();
        builder.Services.AddDuQuantChatClient(o => { o.ModelPath = Stories; o.WarmUpOnStart = false; });
        using IHost host = builder.Build();
        var meters = host.Services.GetRequiredService<IMeterFactory>();
        using var ttft = new MetricCollector<double>(meters, DuQuantTelemetry.MeterName, DuQuantTelemetry.TimeToFirstToken);
        using var perToken = new MetricCollector<double>(meters, DuQuantTelemetry.MeterName, DuQuantTelemetry.TimePerOutputToken);
        using var usage = new MetricCollector<long>(meters, DuQuantTelemetry.MeterName, DuQuantTelemetry.TokenUsage);
        var activities = new List<Activity>();
        using var listener = new ActivityListener
        {
            ShouldListenTo = s => s.Name is DuQuantTelemetry.ActivitySourceName or "test-parent",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = a => { lock (activities) { activities.Add(a); } },
        };
        ActivitySource.AddActivityListener(listener);

        IChatClient client = host.Services.GetRequiredService<IChatClient>();
        using var parent = new ActivitySource("test-parent").StartActivity("request");
        ChatResponse r = await client.GetResponseAsync("Once upon a time", new() { MaxOutputTokens = 6, Temperature = 0 }, TestContext.Current.CancellationToken);

        Assert.Single(ttft.GetMeasurementSnapshot());
        Assert.Equal("duquant", ttft.LastMeasurement!.Tags["gen_ai.provider.name"]);
        Assert.Equal("stories260K", ttft.LastMeasurement.Tags["gen_ai.request.model"]);
        Assert.Equal("chat", ttft.LastMeasurement.Tags["gen_ai.operation.name"]);
        Assert.Single(perToken.GetMeasurementSnapshot());
        var counts = usage.GetMeasurementSnapshot().ToDictionary(m => (string)m.Tags["gen_ai.token.type"]!, m => m.Value);
        Assert.Equal(r.Usage!.InputTokenCount, counts["input"]);
        Assert.Equal(6, counts["output"]);
        Activity chat;
        lock (activities)
        {
            // Other tests run clients at the same time; the static source sees their activities too.
            chat = Assert.Single(activities, a => a.Source.Name == DuQuantTelemetry.ActivitySourceName && (string?)a.GetTagItem("gen_ai.response.id") == r.ResponseId);
        }

        Assert.Equal("chat stories260K", chat.DisplayName);
        Assert.Equal(6, chat.GetTagItem("gen_ai.usage.output_tokens"));
        Assert.Equal(parent!.TraceId, chat.TraceId);
    }

    /// <summary>
    /// <see cref="DuQuantChatClientOptions.Device"/> reaches the accelerator backend's load call. A recording backend stands
    /// in for CUDA (this assembly does not ship LocalMxfp4.Cuda) and declines, so the model runs on the CPU as Auto promises.
    /// It stays registered: declining is what every other Auto load here got from the missing assembly anyway.
    /// </summary>
    [Fact]
    public async Task DeviceOptionReachesTheAcceleratorBackend()
    {
        var backend = new RecordingBackend();
        AcceleratorBackends.Register(backend);
        using var client = new DuQuantChatClient(new DuQuantChatClientOptions { ModelPath = Stories, Backend = EngineBackend.Auto, Device = 3 });
        ChatResponse reply = await client.GetResponseAsync("Once upon a time", new() { MaxOutputTokens = 2 }, TestContext.Current.CancellationToken);
        Assert.Equal(2, reply.Usage!.OutputTokenCount);
        Assert.Equal("cpu", client.GetService<DuQuantBackendInfo>()!.Backend);
        Assert.Contains(3, backend.Devices);
    }

    private sealed class RecordingBackend : IAcceleratorBackend
    {
        public System.Collections.Concurrent.ConcurrentBag<int?> Devices { get; } = [];

        public EngineBackend Backend => EngineBackend.Cuda;

        public Engine.Contract.IInferenceEngine Load(string path, EngineLoadOptions options)
        {
            Devices.Add(options.Device);
            throw new AcceleratorUnavailableException(EngineBackend.Cuda, "the recording test backend declines every model.");
        }
    }

    public sealed class ClockPlugin
    {
        [KernelFunction, System.ComponentModel.Description("Gets the current UTC time")]
        public static string Now() => DateTimeOffset.UtcNow.ToString("u", System.Globalization.CultureInfo.InvariantCulture);
    }
}
