using System.ComponentModel;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.SemanticKernel;
using Microsoft.SemanticKernel.ChatCompletion;

namespace LocalMxfp4.ChatClient.Tests;

/// <summary>Semantic Kernel's automatic function calling over DuQuantChatClient.</summary>
public class SemanticKernelToolTests(TinyLlama3Model llama)
{
    public sealed class NotesPlugin
    {
        public List<string> Saved { get; } = [];

        public Action? OnSave { get; set; }

        [KernelFunction("save"), Description("Saves a note.")]
        public string Save([Description("The note")] string text)
        {
            Saved.Add(text);
            OnSave?.Invoke();
            return $"Saved note #{Saved.Count}.";
        }
    }

    [Fact]
    public async Task RequiredFunctionChoiceMakesTheStoryModelCallThePlugin()
    {
        IKernelBuilder kb = Kernel.CreateBuilder();
        kb.AddDuQuantChatCompletion(o => { o.ModelPath = Stories260KModel.Directory; o.WarmUpOnStart = false; });
        var notes = new NotesPlugin();
        kb.Plugins.AddFromObject(notes, "notes");
        Kernel kernel = kb.Build();
        var settings = new PromptExecutionSettings
        {
            FunctionChoiceBehavior = FunctionChoiceBehavior.Required(),
            ExtensionData = new Dictionary<string, object> { ["max_tokens"] = 48, ["temperature"] = 1.0 },
        };

        IChatCompletionService chat = kernel.GetRequiredService<IChatCompletionService>();
        var history = new ChatHistory();
        history.AddUserMessage("Once upon a time");
        Microsoft.SemanticKernel.ChatMessageContent answer = await chat.GetChatMessageContentAsync(history, settings, kernel, TestContext.Current.CancellationToken);

        // SK ran the plugin with the model's arguments, and then asked the model again with the result in the history.
        string saved = Assert.Single(notes.Saved);
        Assert.NotNull(saved);
        Assert.Contains(history, m => m.Items.OfType<Microsoft.SemanticKernel.FunctionCallContent>().Any(c => c.FunctionName == "notes_save"));
        Assert.Contains(history, m => m.Items.OfType<Microsoft.SemanticKernel.FunctionResultContent>().Any(r => r.Result!.ToString()!.Contains("Saved note #1.", StringComparison.Ordinal)));
        Assert.NotNull(answer.Content);
    }

    [Fact]
    public async Task AutoFunctionChoiceRunsAToolCapableModelsCall()
    {
        // The engine is scripted to answer with a call, as a tool-capable LLaMA-3.1 would, then with text.
        var engine = new InstrumentedEngine(llama.Engine);
        int eot = llama.Special("<|eot_id|>");
        var services = new ServiceCollection();
        services.AddChatClient(_ => llama.Client(engine: engine)).UseKernelFunctionInvocation();
        services.AddChatCompletionServiceFromChatClient();
        IKernelBuilder kb = services.AddKernel();
        // After the call the model answers in text, as a real one would with the result in front of it.
        var notes = new NotesPlugin { OnSave = () => { engine.Script = []; engine.ThenForce = eot; } };
        kb.Plugins.AddFromObject(notes, "notes");
        await using ServiceProvider provider = services.BuildServiceProvider();
        Kernel kernel = provider.GetRequiredService<Kernel>();

        string toolName = kernel.Plugins.GetFunctionsMetadata().Select(f => f.ToKernelFunctionName()).Single();
        engine.Script = [.. llama.Tokenizer.Encode($"{{\"name\": \"{toolName}\", \"parameters\": {{\"text\": \"buy milk\"}}}}"), eot];

        var settings = new PromptExecutionSettings
        {
            FunctionChoiceBehavior = FunctionChoiceBehavior.Auto(),
            ExtensionData = new Dictionary<string, object> { ["max_tokens"] = 40 },
        };
        FunctionResult result = await kernel.InvokePromptAsync("Remember to buy milk.", new KernelArguments(settings), cancellationToken: TestContext.Current.CancellationToken);
        Assert.Equal(["buy milk"], notes.Saved);
        Assert.NotNull(result.GetValue<string>());
    }
}

internal static class KernelFunctionNames
{
    // SK 1.82's IChatClient bridge names a plugin function plugin_function.
    public static string ToKernelFunctionName(this KernelFunctionMetadata f) => $"{f.PluginName}_{f.Name}";
}
