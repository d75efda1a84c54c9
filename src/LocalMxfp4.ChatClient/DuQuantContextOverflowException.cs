namespace LocalMxfp4.ChatClient;

/// <summary>A conversation does not fit the client's context; nothing was generated.</summary>
public sealed class DuQuantContextOverflowException : InvalidOperationException
{
    /// <summary>Creates the exception with the numbers that explain it.</summary>
    public DuQuantContextOverflowException(int promptTokens, int contextLength, int modelMaxPositions, ContextOverflowPolicy policy)
        : base(BuildMessage(promptTokens, contextLength, modelMaxPositions, policy))
    {
        PromptTokens = promptTokens;
        ContextLength = contextLength;
        ModelMaxPositions = modelMaxPositions;
        Policy = policy;
    }

    /// <summary>Tokens the rendered prompt needs (after any dropping the policy allowed).</summary>
    public int PromptTokens { get; }

    /// <summary>The client's context length; the prompt plus at least one reply token must fit.</summary>
    public int ContextLength { get; }

    /// <summary>The model's maximum context (max_position_embeddings).</summary>
    public int ModelMaxPositions { get; }

    /// <summary>The policy in force.</summary>
    public ContextOverflowPolicy Policy { get; }

    private static string BuildMessage(int prompt, int context, int max, ContextOverflowPolicy policy)
    {
        string fixes = policy == ContextOverflowPolicy.DropOldestMessages
            ? "Even with only the system prompt and the last message left it does not fit: shorten that message"
            : "Shorten the conversation, set ContextOverflowPolicy = DropOldestMessages to drop the oldest turns";
        string raise = context < max ? $", or raise ContextLength (the model allows up to {max})" : string.Empty;
        return $"The prompt needs {prompt} tokens plus at least 1 for the reply, but the context holds {context} tokens. {fixes}{raise}.";
    }
}
