using System.Text;
using LocalMxfp4.ChatClient.Tools;
using Microsoft.Extensions.AI;

namespace LocalMxfp4.ChatClient.Templates;

/// <summary>The text a chat message contributes to a prompt, shared by the templates.</summary>
public static class MessageText
{
    /// <summary>
    /// Concatenates the message's text contents. Function calls are written as LLaMA-3.1's JSON
    /// (<c>{"name": …, "parameters": …}</c>, several separated by "; ", after the text on a new line) and a function
    /// result as <c>{"output": …}</c>, so a history produced by function-invocation middleware can be rendered. Usage and
    /// reasoning contents contribute nothing.
    /// </summary>
    /// <exception cref="NotSupportedException">The message holds data (image, audio, file) a text-only model cannot read.</exception>
    public static string Of(ChatMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        var text = new StringBuilder();
        var calls = new List<string>();
        foreach (AIContent content in message.Contents)
        {
            switch (content)
            {
                case TextContent t:
                    text.Append(t.Text);
                    break;
                case FunctionCallContent call:
                    calls.Add(ToolCallText.Format(call));
                    break;
                case FunctionResultContent result:
                    text.Append(ToolCallText.FormatResult(result));
                    break;
                case DataContent or UriContent or HostedFileContent:
                    throw new NotSupportedException(
                        $"A {message.Role} message holds {content.GetType().Name} ({(content as DataContent)?.MediaType ?? (content as UriContent)?.MediaType ?? "a file"}); " +
                        "this model reads text only. Send the content as text instead.");
                default:
                    // UsageContent, TextReasoningContent, ErrorContent and the like carry nothing the model should read.
                    break;
            }
        }

        if (calls.Count > 0)
        {
            if (text.Length > 0)
            {
                text.Append('\n');
            }

            text.Append(string.Join("; ", calls));
        }

        return text.ToString();
    }

    /// <summary>
    /// Splits off the system prompt: the text of the leading system messages, then <paramref name="instructions"/>,
    /// joined by a blank line; null when there is neither. Returns the index of the first message after them.
    /// </summary>
    public static (string? System, int FirstOther) MergeSystem(IReadOnlyList<ChatMessage> messages, string? instructions)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var parts = new List<string>();
        int i = 0;
        for (; i < messages.Count && messages[i].Role == ChatRole.System; i++)
        {
            string s = Of(messages[i]).Trim();
            if (s.Length > 0)
            {
                parts.Add(s);
            }
        }

        if (!string.IsNullOrWhiteSpace(instructions))
        {
            parts.Add(instructions.Trim());
        }

        return (parts.Count == 0 ? null : string.Join("\n\n", parts), i);
    }
}
