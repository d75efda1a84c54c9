using LocalMxfp4.ChatClient.Tools;
using LocalMxfp4.Tokenization;
using Microsoft.Extensions.AI;

namespace LocalMxfp4.ChatClient.Templates;

/// <summary>
/// The LLaMA-3 / 3.1 instruct format, as Meta's chat template writes it:
/// <c>&lt;|begin_of_text|&gt;</c>, then per message <c>&lt;|start_header_id|&gt;role&lt;|end_header_id|&gt;</c> +
/// <c>"\n\n" + trimmed text</c> + <c>&lt;|eot_id|&gt;</c>, then the assistant header and <c>"\n\n"</c> for the reply.
/// Leading system messages and <c>ChatOptions.Instructions</c> become one system message; the tool role is written
/// as <c>ipython</c>. The reply ends at <c>&lt;|eot_id|&gt;</c>, <c>&lt;|eom_id|&gt;</c> or <c>&lt;|end_of_text|&gt;</c>.
/// With tools (LLaMA-3.1 JSON tool calling), the system turn starts with "Environment: ipython" and the knowledge and
/// current dates, and the first user message is preceded by the tool-call instruction and each tool's definition;
/// earlier calls are written as <c>{"name": …, "parameters": …}</c> assistant turns and each result as an
/// <c>ipython</c> turn <c>{"output": …}</c>.
/// </summary>
public sealed class Llama3ChatTemplate : IToolCallingChatTemplate
{
    private const string StartHeader = "<|start_header_id|>";
    private const string EndHeader = "<|end_header_id|>";
    private const string EndOfTurn = "<|eot_id|>";

    private readonly TimeProvider _clock;

    /// <summary>Creates the template.</summary>
    /// <param name="timeProvider">Supplies "Today Date" of the tool-calling system preamble; the system clock when null.</param>
    public Llama3ChatTemplate(TimeProvider? timeProvider = null)
    {
        _clock = timeProvider ?? TimeProvider.System;
    }

    /// <inheritdoc />
    public string Name => "llama3";

    /// <inheritdoc />
    public bool IsChatFormat => true;

    /// <inheritdoc />
    public string Description => "LLaMA-3 instruct format: header tokens per role, <|eot_id|> after each turn.";

    /// <summary>Whether <paramref name="tokenizer"/> has the special tokens this format needs.</summary>
    public static bool Supports(LlmTokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        return tokenizer.TryGetSpecialTokenId(StartHeader) is not null
            && tokenizer.TryGetSpecialTokenId(EndHeader) is not null
            && tokenizer.TryGetSpecialTokenId(EndOfTurn) is not null;
    }

    /// <inheritdoc />
    public IReadOnlyList<int> Render(IReadOnlyList<ChatMessage> messages, string? instructions, LlmTokenizer tokenizer) =>
        Render(messages, instructions, [], tokenizer);

    /// <inheritdoc />
    public IReadOnlyList<int> Render(IReadOnlyList<ChatMessage> messages, string? instructions, IReadOnlyList<AIFunctionDeclaration> tools, LlmTokenizer tokenizer) =>
        Render(messages, instructions, tools, tokenizer, replies: null);

    /// <summary>
    /// Renders like <see cref="Render(IReadOnlyList{ChatMessage}, string?, IReadOnlyList{AIFunctionDeclaration}, LlmTokenizer)"/>;
    /// an assistant message whose text <paramref name="replies"/> knows (a reply generated here, unchanged) is written as
    /// <c>"\n\n"</c> followed by the ids it was generated as — the tokens the KV cache holds — instead of its trimmed,
    /// re-encoded text, so the conversation continues exactly as the model produced it.
    /// </summary>
    public IReadOnlyList<int> Render(IReadOnlyList<ChatMessage> messages, string? instructions, IReadOnlyList<AIFunctionDeclaration> tools, LlmTokenizer tokenizer, IReplyTokenLookup? replies)
    {
        ArgumentNullException.ThrowIfNull(messages);
        ArgumentNullException.ThrowIfNull(tools);
        ArgumentNullException.ThrowIfNull(tokenizer);
        int start = Required(tokenizer, StartHeader), end = Required(tokenizer, EndHeader), eot = Required(tokenizer, EndOfTurn);
        var ids = new List<int>(256);
        if (tokenizer.BeginOfSequenceId is int bos)
        {
            ids.Add(bos);
        }

        (string? system, int first) = MessageText.MergeSystem(messages, instructions);
        string? toolBlock = null;
        if (tools.Count > 0)
        {
            // Meta's template puts custom tools in the first user message; without one they go to the system turn.
            toolBlock = Llama31ToolPrompt.Definitions(tools);
            bool hasUser = messages.Skip(first).Any(m => m.Role == ChatRole.User);
            system = Llama31ToolPrompt.SystemPreamble(_clock.GetUtcNow()) + (system ?? "") + (hasUser ? "" : "\n\n" + toolBlock.TrimEnd());
            toolBlock = hasUser ? toolBlock : null;
        }

        if (system is not null)
        {
            AppendTurn(ids, tokenizer, start, end, eot, "system", system.Trim());
        }

        for (int i = first; i < messages.Count; i++)
        {
            ChatMessage m = messages[i];
            if (m.Role == ChatRole.Tool && m.Contents.OfType<FunctionResultContent>().Count() > 1)
            {
                // One ipython turn per result, as the function-invocation middleware batches them in one message.
                foreach (AIContent content in m.Contents)
                {
                    string part = content is FunctionResultContent r ? ToolCallText.FormatResult(r) : MessageText.Of(new ChatMessage(ChatRole.Tool, [content])).Trim();
                    if (part.Length > 0)
                    {
                        AppendTurn(ids, tokenizer, start, end, eot, "ipython", part);
                    }
                }

                continue;
            }

            string text = MessageText.Of(m).Trim();
            if (toolBlock is not null && m.Role == ChatRole.User)
            {
                text = toolBlock + text;
                toolBlock = null;
            }

            if (m.Role == ChatRole.Assistant && replies is not null && text.Length > 0 && replies.TryGet(MessageText.Of(m), out IReadOnlyList<int>? generated))
            {
                ids.Add(start);
                ids.AddRange(tokenizer.Encode("assistant"));
                ids.Add(end);
                ids.AddRange(tokenizer.Encode("\n\n"));
                ids.AddRange(generated);
                ids.Add(eot);
                continue;
            }

            AppendTurn(ids, tokenizer, start, end, eot, RoleName(m.Role), text);
        }

        ids.Add(start);
        ids.AddRange(tokenizer.Encode("assistant"));
        ids.Add(end);
        ids.AddRange(tokenizer.Encode("\n\n"));
        return ids;
    }

    /// <inheritdoc />
    public IReadOnlyCollection<int> GetStopTokenIds(LlmTokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        var ids = new List<int>();
        foreach (string name in new[] { EndOfTurn, "<|eom_id|>", "<|end_of_text|>" })
        {
            if (tokenizer.TryGetSpecialTokenId(name) is int id)
            {
                ids.Add(id);
            }
        }

        return ids;
    }

    private static void AppendTurn(List<int> ids, LlmTokenizer tokenizer, int start, int end, int eot, string role, string text)
    {
        ids.Add(start);
        ids.AddRange(tokenizer.Encode(role));
        ids.Add(end);
        ids.AddRange(tokenizer.Encode("\n\n" + text));
        ids.Add(eot);
    }

    private static string RoleName(ChatRole role)
    {
        if (role == ChatRole.System)
        {
            return "system";
        }

        if (role == ChatRole.User)
        {
            return "user";
        }

        if (role == ChatRole.Assistant)
        {
            return "assistant";
        }

        if (role == ChatRole.Tool)
        {
            return "ipython";
        }

        throw new ArgumentException(
            $"The LLaMA-3 template knows the roles system, user, assistant and tool; a message has role '{role.Value}'.", nameof(role));
    }

    private static int Required(LlmTokenizer tokenizer, string name) =>
        tokenizer.TryGetSpecialTokenId(name)
        ?? throw new NotSupportedException($"The tokenizer ({tokenizer.SourcePath}) has no {name} token, so it cannot use the LLaMA-3 chat format; use ChatTemplateKind.PlainText.");
}
