using System.Text;
using LocalMxfp4.ChatClient;
using LocalMxfp4.Samples.SemanticKernelAgent;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.SemanticKernel;
using Microsoft.SemanticKernel.ChatCompletion;

// An agent loop over Semantic Kernel: a kernel with DuQuantChatClient as its chat-completion service, a plugin, a
// chat history, and automatic function calling requested. Usage: SemanticKernelAgent [--model DIR] [--prompt TEXT] [--max-tokens N]
Console.OutputEncoding = Encoding.UTF8;
string modelPath = Path.Combine(AppContext.BaseDirectory, "models", "stories260K");
string? oneShot = null;
int maxTokens = 120;
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--model" when i + 1 < args.Length: modelPath = args[++i]; break;
        case "--prompt" when i + 1 < args.Length: oneShot = args[++i]; break;
        case "--max-tokens" when i + 1 < args.Length && int.TryParse(args[i + 1], out int n) && n > 0: maxTokens = n; i++; break;
        default:
            Console.Error.WriteLine($"error: unknown or incomplete option '{args[i]}'. usage: SemanticKernelAgent [--model DIR] [--prompt TEXT] [--max-tokens N]");
            return 2;
    }
}

IKernelBuilder builder = Kernel.CreateBuilder();
builder.AddDuQuantChatCompletion(o =>
{
    o.ModelPath = modelPath;
    o.DefaultMaxOutputTokens = maxTokens;
    o.ContextOverflowPolicy = ContextOverflowPolicy.DropOldestMessages;
});
builder.Plugins.AddFromType<NotebookPlugin>("notebook");
builder.Services.AddSingleton<IFunctionInvocationFilter, ToolTrace>();
Kernel kernel = builder.Build();

IChatClient client = kernel.GetRequiredService<IChatClient>();
DuQuantBackendInfo info;
try
{
    info = client.GetService<DuQuantBackendInfo>()!;   // loads the model
}
catch (Exception e) when (e is ArgumentException or IOException or InvalidOperationException or NotSupportedException)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return 2;
}

// Say what this agent can and cannot do, from what the client reports.
Console.WriteLine($"Semantic Kernel agent on {info.ModelId} ({info.Backend}, {info.WeightFormat}, template {info.ChatTemplate}).");
Console.WriteLine("Plugin functions registered with the kernel:");
foreach (KernelFunctionMetadata f in kernel.Plugins.GetFunctionsMetadata())
{
    Console.WriteLine($"  {f.PluginName}.{f.Name}: {f.Description}");
}

// A chat model with a tool format (LLaMA-3.1) sees the functions and decides itself whether to call one. A model that
// cannot read tool descriptions (the shipped stories260K) is made to call one each turn: FunctionChoiceBehavior.Required
// becomes ToolMode.RequireAny, and constrained decoding guarantees a well-formed call to one of the functions.
FunctionChoiceBehavior behavior = info.SupportsToolCalling ? FunctionChoiceBehavior.Auto() : FunctionChoiceBehavior.Required();
Console.WriteLine(info.SupportsToolCalling
    ? "Tool calling: on. The model sees the functions above and may call them; SK runs each call and feeds the result back."
    : $"Tool calling: {info.ModelId} cannot read tool descriptions, so every turn requires a function call: constrained decoding makes " +
      "it write a valid call to one of the functions above, SK runs it and feeds the result back, and the model continues.");
Console.WriteLine("Calls are shown as [tool] lines. Use /call PLUGIN.FUNCTION [ARG] to run one yourself.");
if (!info.IsChatModel)
{
    Console.WriteLine($"Note: {info.ModelId} is not a chat model: it continues your text as a story.");
}

IChatCompletionService chat = kernel.GetRequiredService<IChatCompletionService>();
var settings = new PromptExecutionSettings { FunctionChoiceBehavior = behavior };
var history = new ChatHistory("You are a helpful assistant with a notebook. Use the notebook functions when asked to remember or recall something.");

async Task AskAsync(string line)
{
    history.AddUserMessage(line);
    var reply = new StringBuilder();
    await foreach (StreamingChatMessageContent chunk in chat.GetStreamingChatMessageContentsAsync(history, settings, kernel))
    {
        Console.Write(chunk.Content);
        reply.Append(chunk.Content);
    }

    Console.WriteLine();
    history.AddAssistantMessage(reply.ToString());
}

if (oneShot is not null)
{
    await AskAsync(oneShot);
    return 0;
}

while (true)
{
    Console.Write("> ");
    string? line = Console.ReadLine()?.Trim();
    if (line is null || line is "/exit" or "/quit")
    {
        return 0;
    }

    if (line.Length == 0)
    {
        continue;
    }

    if (line.StartsWith("/call ", StringComparison.Ordinal))
    {
        string[] parts = line["/call ".Length..].Split(' ', 2, StringSplitOptions.TrimEntries);
        string[] name = parts[0].Split('.', 2);
        if (name.Length != 2 || !kernel.Plugins.TryGetFunction(name[0], name[1], out KernelFunction? function))
        {
            Console.WriteLine($"error: no function '{parts[0]}'; use PLUGIN.FUNCTION as listed above.");
            continue;
        }

        var arguments = new KernelArguments();
        if (parts.Length > 1 && function.Metadata.Parameters.FirstOrDefault() is { } first)
        {
            arguments[first.Name] = parts[1];
        }

        FunctionResult result = await kernel.InvokeAsync(function, arguments);
        Console.WriteLine(result.GetValue<object>()?.ToString());
        continue;
    }

    await AskAsync(line);
}
