using LocalMxfp4.ChatClient.Constrained;
using LocalMxfp4.ChatClient.Templates;
using Microsoft.Extensions.AI;

namespace LocalMxfp4.ChatClient.Tools;

/// <summary>
/// What a request's <c>Tools</c>, <c>ToolMode</c> and <c>AllowMultipleToolCalls</c> mean for this model: which
/// functions the prompt shows, whether a call is required (and so constrained), which names a call may use.
/// </summary>
internal sealed class ToolRequest
{
    /// <summary>Calls per reply when several are allowed: more than any real model writes, few enough to bound a weak one.</summary>
    public const int MaxCallsPerReply = 8;

    private ToolRequest(IReadOnlyList<AIFunctionDeclaration> callable, IReadOnlyList<AIFunctionDeclaration> shown, bool required, bool allowMultiple, int ignored, string? ignoredReason)
    {
        Callable = callable;
        Shown = shown;
        Required = required;
        AllowMultiple = allowMultiple;
        Ignored = ignored;
        IgnoredReason = ignoredReason;
    }

    /// <summary>The functions a call may name (for RequireSpecific, that one).</summary>
    public IReadOnlyList<AIFunctionDeclaration> Callable { get; }

    /// <summary>The functions described in the prompt.</summary>
    public IReadOnlyList<AIFunctionDeclaration> Shown { get; }

    /// <summary>Whether the reply must be a call (RequireAny / RequireSpecific): decoding is constrained to one.</summary>
    public bool Required { get; }

    /// <summary>False when ChatOptions.AllowMultipleToolCalls is false: at most one call per reply.</summary>
    public bool AllowMultiple { get; }

    /// <summary>Tools in ChatOptions.Tools the model does not get, and why.</summary>
    public int Ignored { get; }

    public string? IgnoredReason { get; }

    /// <summary>Whether the reply is read for tool calls.</summary>
    public bool ParsesCalls => Required || Shown.Count > 0;

    /// <exception cref="ArgumentException">A required tool mode without functions, an unknown required function, or duplicate names.</exception>
    public static ToolRequest Resolve(ChatOptions? options, IChatTemplate template)
    {
        IList<AITool> tools = options?.Tools ?? [];
        AIFunctionDeclaration[] functions = [.. tools.OfType<AIFunctionDeclaration>()];
        int hosted = tools.Count - functions.Length;
        string? duplicate = functions.GroupBy(f => f.Name, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1)?.Key;
        if (duplicate is not null)
        {
            throw new ArgumentException($"ChatOptions.Tools has two functions named '{duplicate}'; a call could not say which one it means.", nameof(options));
        }

        bool allowMultiple = options?.AllowMultipleToolCalls != false;
        string? hostedReason = hosted > 0 ? "only AIFunctionDeclaration tools can be called by a local model (hosted tools run on a provider's servers)" : null;
        switch (options?.ToolMode)
        {
            case NoneChatToolMode:
                return new ToolRequest([], [], required: false, allowMultiple, hosted, hostedReason);
            case RequiredChatToolMode required:
                if (functions.Length == 0)
                {
                    throw new ArgumentException(
                        "ChatOptions.ToolMode requires a tool call, but ChatOptions.Tools has no function (AIFunctionDeclaration) to call.", nameof(options));
                }

                AIFunctionDeclaration[] callable = functions;
                if (required.RequiredFunctionName is { } name)
                {
                    callable = [.. functions.Where(f => f.Name == name)];
                    if (callable.Length == 0)
                    {
                        throw new ArgumentException(
                            $"ChatOptions.ToolMode requires a call to '{name}', which is not among ChatOptions.Tools ({string.Join(", ", functions.Select(f => f.Name))}).",
                            nameof(options));
                    }
                }

                return new ToolRequest(callable, template is IToolCallingChatTemplate ? functions : [], required: true, allowMultiple, hosted, hostedReason);
            default:
                if (template is IToolCallingChatTemplate || functions.Length == 0)
                {
                    return new ToolRequest(functions, functions, required: false, allowMultiple, hosted, hostedReason);
                }

                // A plain-text model has no tool format; it could only be made to call one (RequireAny).
                return new ToolRequest([], [], required: false, allowMultiple, tools.Count,
                    $"the {template.Name} template has no tool-calling format (the model is not a chat model); ToolMode = RequireAny still makes it call one through constrained decoding");
        }
    }

    /// <summary>The grammar a required call follows: one of <see cref="Callable"/> with arguments matching its schema.</summary>
    /// <exception cref="JsonSchemaNotSupportedException">A function's parameter schema uses a keyword constrained decoding cannot enforce.</exception>
    public JsonGrammar CallGrammar() =>
        JsonGrammar.ToolCalls([.. Callable.Select(f => (f.Name, f.JsonSchema))], AllowMultiple ? MaxCallsPerReply : 1);

    /// <summary>The names a parsed call may use.</summary>
    public IReadOnlyCollection<string> Names => [.. Callable.Select(f => f.Name)];
}
