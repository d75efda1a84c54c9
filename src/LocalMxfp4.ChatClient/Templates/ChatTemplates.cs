using LocalMxfp4.Tokenization;

namespace LocalMxfp4.ChatClient.Templates;

/// <summary>Picks the template for a model.</summary>
public static class ChatTemplates
{
    /// <summary>
    /// The custom template when given; else the requested kind; for <see cref="ChatTemplateKind.Auto"/>, LLaMA-3 when the
    /// tokenizer has its header tokens and plain-text continuation otherwise.
    /// </summary>
    /// <exception cref="NotSupportedException">LLaMA-3 was requested but the tokenizer lacks its special tokens.</exception>
    public static IChatTemplate Select(ChatTemplateKind kind, LlmTokenizer tokenizer, IChatTemplate? custom = null)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        if (custom is not null)
        {
            return custom;
        }

        return kind switch
        {
            ChatTemplateKind.Llama3 when !Llama3ChatTemplate.Supports(tokenizer) => throw new NotSupportedException(
                $"ChatTemplate = Llama3, but the tokenizer ({tokenizer.SourcePath}) has no <|start_header_id|>/<|end_header_id|>/<|eot_id|> tokens; use Auto or PlainText."),
            ChatTemplateKind.Llama3 => new Llama3ChatTemplate(),
            ChatTemplateKind.PlainText => new PlainTextContinuationTemplate(),
            ChatTemplateKind.Auto => Llama3ChatTemplate.Supports(tokenizer) ? new Llama3ChatTemplate() : new PlainTextContinuationTemplate(),
            _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown ChatTemplateKind; use Auto, Llama3 or PlainText."),
        };
    }
}
