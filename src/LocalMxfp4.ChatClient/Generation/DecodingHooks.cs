using Microsoft.Extensions.AI;

namespace LocalMxfp4.ChatClient.Generation;

/// <summary>
/// Turns the reply text, as it streams, into message contents (the plug-in point for tool-call parsing). The
/// default passes text through; a tool-call parser buffers a call and emits a <c>FunctionCallContent</c> at the end.
/// </summary>
internal interface IResponseParser
{
    /// <summary>Contents completed by <paramref name="text"/> (may be empty while something is being buffered).</summary>
    IReadOnlyList<AIContent> Append(string text);

    /// <summary>Whatever is still buffered at the end of generation.</summary>
    IReadOnlyList<AIContent> Complete();

    /// <summary>A finish reason that replaces Stop/Length (e.g. ToolCalls), once known.</summary>
    ChatFinishReason? FinishReasonOverride { get; }

    /// <summary>
    /// Told about every special token the model emits that does not end the reply (it has no text, so
    /// <see cref="Append"/> never sees it); LLaMA-3.1's <c>&lt;|python_tag|&gt;</c> announces a tool call this way.
    /// </summary>
    void OnSpecialToken(int tokenId);
}

/// <summary>The default parser: every piece of text is a <see cref="TextContent"/>.</summary>
internal sealed class TextResponseParser : IResponseParser
{
    public ChatFinishReason? FinishReasonOverride => null;

    public IReadOnlyList<AIContent> Append(string text) => text.Length == 0 ? [] : [new TextContent(text)];

    public IReadOnlyList<AIContent> Complete() => [];

    public void OnSpecialToken(int tokenId)
    {
        // Plain text has no use for control tokens.
    }
}
