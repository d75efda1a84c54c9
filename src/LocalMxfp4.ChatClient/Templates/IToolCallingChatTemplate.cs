using LocalMxfp4.Tokenization;
using Microsoft.Extensions.AI;

namespace LocalMxfp4.ChatClient.Templates;

/// <summary>
/// A chat template that can show tool definitions to the model, so <c>ChatToolMode.Auto</c> lets the model decide to
/// call one. Templates without it (plain-text continuation) get no tool descriptions; required tool calls still work
/// with them, through constrained decoding.
/// </summary>
public interface IToolCallingChatTemplate : IChatTemplate
{
    /// <summary>
    /// Renders <paramref name="messages"/> like <see cref="IChatTemplate.Render"/>, with <paramref name="tools"/>
    /// described in the model's tool-calling prompt format (nothing extra when the list is empty).
    /// </summary>
    /// <exception cref="NotSupportedException">A message holds content the template cannot represent.</exception>
    /// <exception cref="ArgumentException">A message has a role the template does not know.</exception>
    IReadOnlyList<int> Render(IReadOnlyList<ChatMessage> messages, string? instructions, IReadOnlyList<AIFunctionDeclaration> tools, LlmTokenizer tokenizer);
}
