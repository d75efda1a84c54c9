using LocalMxfp4.Tokenization;
using Microsoft.Extensions.AI;

namespace LocalMxfp4.ChatClient.Templates;

/// <summary>
/// For models that were never trained to chat (the bundled stories260K writes children's stories): the system prompt,
/// instructions and message texts are joined with newlines, without any role markers, after the beginning-of-sequence
/// token, and the model simply continues that text. There is no end-of-turn token, so a reply ends only at the model's
/// end-of-text token, <c>MaxOutputTokens</c>, the context end, or a stop sequence.
/// </summary>
public sealed class PlainTextContinuationTemplate : IChatTemplate
{
    /// <inheritdoc />
    public string Name => "plain-text";

    /// <inheritdoc />
    public bool IsChatFormat => false;

    /// <inheritdoc />
    public string Description =>
        "Not a chat model: the messages are joined as plain text (no roles) and the model continues that text.";

    /// <inheritdoc />
    public IReadOnlyList<int> Render(IReadOnlyList<ChatMessage> messages, string? instructions, LlmTokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(messages);
        ArgumentNullException.ThrowIfNull(tokenizer);
        (string? system, int first) = MessageText.MergeSystem(messages, instructions);
        var parts = new List<string>();
        if (system is not null)
        {
            parts.Add(system);
        }

        for (int i = first; i < messages.Count; i++)
        {
            string text = MessageText.Of(messages[i]).Trim();
            if (text.Length > 0)
            {
                parts.Add(text);
            }
        }

        var ids = new List<int>();
        if (tokenizer.BeginOfSequenceId is int bos)
        {
            ids.Add(bos);
        }

        if (parts.Count > 0)
        {
            ids.AddRange(tokenizer.Encode(string.Join("\n", parts)));
        }

        return ids;
    }

    /// <inheritdoc />
    public IReadOnlyCollection<int> GetStopTokenIds(LlmTokenizer tokenizer) => [];
}
