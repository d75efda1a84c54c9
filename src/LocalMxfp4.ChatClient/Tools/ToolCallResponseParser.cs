using System.Text;
using LocalMxfp4.ChatClient.Generation;
using Microsoft.Extensions.AI;

namespace LocalMxfp4.ChatClient.Tools;

/// <summary>
/// Streams a reply that may be a tool call. A reply that starts with <c>&lt;|python_tag|&gt;</c> or, after any
/// whitespace, with '{' is held back to the end and then read as calls; each call becomes one whole
/// <see cref="FunctionCallContent"/> and the finish reason becomes <see cref="ChatFinishReason.ToolCalls"/>. Anything
/// else — and held-back text that turns out not to be a valid call — is passed on as text, so a call never leaks as
/// text and prose is never lost.
/// </summary>
internal sealed class ToolCallResponseParser : IResponseParser
{
    private readonly IReadOnlyCollection<string> _toolNames;
    private readonly bool _allowMultiple;
    private readonly int? _pythonTagId;
    private readonly StringBuilder _held = new();
    private Mode _mode;

    /// <param name="toolNames">The tools offered; a call to any other name is text.</param>
    /// <param name="allowMultiple">False keeps only the first call (ChatOptions.AllowMultipleToolCalls = false).</param>
    /// <param name="pythonTagId">The <c>&lt;|python_tag|&gt;</c> id, if the tokenizer has one.</param>
    public ToolCallResponseParser(IReadOnlyCollection<string> toolNames, bool allowMultiple, int? pythonTagId)
    {
        _toolNames = toolNames;
        _allowMultiple = allowMultiple;
        _pythonTagId = pythonTagId;
    }

    private enum Mode
    {
        Undecided,
        Text,
        Call,
    }

    public ChatFinishReason? FinishReasonOverride { get; private set; }

    public IReadOnlyList<AIContent> Append(string text)
    {
        if (text.Length == 0)
        {
            return [];
        }

        switch (_mode)
        {
            case Mode.Text:
                return [new TextContent(text)];
            case Mode.Call:
                _held.Append(text);
                return [];
            default:
                _held.Append(text);
                int i = 0;
                while (i < _held.Length && char.IsWhiteSpace(_held[i]))
                {
                    i++;
                }

                if (i == _held.Length)
                {
                    return [];
                }

                if (_held[i] == '{')
                {
                    _mode = Mode.Call;
                    return [];
                }

                _mode = Mode.Text;
                string all = _held.ToString();
                _held.Clear();
                return [new TextContent(all)];
        }
    }

    public void OnSpecialToken(int tokenId)
    {
        if (tokenId == _pythonTagId && _mode == Mode.Undecided)
        {
            _mode = Mode.Call;
        }
    }

    public IReadOnlyList<AIContent> Complete()
    {
        string held = _held.ToString();
        _held.Clear();
        if (_mode == Mode.Call && ToolCallText.TryParse(held, _toolNames, out List<FunctionCallContent> calls))
        {
            FinishReasonOverride = ChatFinishReason.ToolCalls;
            return _allowMultiple ? calls : [calls[0]];
        }

        return held.Length == 0 ? [] : [new TextContent(held)];
    }
}
