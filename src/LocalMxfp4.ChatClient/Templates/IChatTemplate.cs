using LocalMxfp4.Tokenization;
using Microsoft.Extensions.AI;

namespace LocalMxfp4.ChatClient.Templates;

/// <summary>
/// Turns a conversation into the token ids a model was trained to continue. Implementations insert special tokens
/// as ids and encode message text with <see cref="LlmTokenizer.Encode"/>, which never turns text such as
/// <c>&lt;|eot_id|&gt;</c> typed by a user into a control token.
/// </summary>
public interface IChatTemplate
{
    /// <summary>A short name for logs and diagnostics, e.g. "llama3".</summary>
    string Name { get; }

    /// <summary>False when the model is not a chat model and the template only continues plain text.</summary>
    bool IsChatFormat { get; }

    /// <summary>One sentence a user can read about what the template does with a conversation.</summary>
    string Description { get; }

    /// <summary>Renders <paramref name="messages"/>, with <paramref name="instructions"/> merged into the system prompt, ready for the reply.</summary>
    /// <exception cref="NotSupportedException">A message holds content the template cannot represent (an image, say).</exception>
    /// <exception cref="ArgumentException">A message has a role the template does not know.</exception>
    IReadOnlyList<int> Render(IReadOnlyList<ChatMessage> messages, string? instructions, LlmTokenizer tokenizer);

    /// <summary>Ids that end a reply in this format, in addition to the tokenizer's and the model's end-of-sequence ids.</summary>
    IReadOnlyCollection<int> GetStopTokenIds(LlmTokenizer tokenizer);
}
