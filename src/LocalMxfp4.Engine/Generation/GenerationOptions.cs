using LocalMxfp4.Engine.Sampling;

namespace LocalMxfp4.Engine.Generation;

/// <summary>What to generate after a prompt.</summary>
public sealed record GenerationOptions
{
    /// <summary>Upper bound on new tokens (also bounded by the session's remaining context).</summary>
    public int MaxNewTokens { get; init; } = 256;

    /// <summary>Token choice.</summary>
    public SamplingOptions Sampling { get; init; } = SamplingOptions.Greedy;

    /// <summary>Ids that end generation (not emitted as text).</summary>
    public IReadOnlyCollection<int> StopTokenIds { get; init; } = [];
}

/// <summary>Why generation ended.</summary>
public enum GenerationFinish
{
    /// <summary>A stop token was produced.</summary>
    Stop,

    /// <summary><see cref="GenerationOptions.MaxNewTokens"/> was reached.</summary>
    Length,

    /// <summary>The session's context is full.</summary>
    ContextFull,
}

/// <summary>One generated token.</summary>
/// <param name="TokenId">The sampled id.</param>
/// <param name="Text">Text completed by this token (may be empty while a UTF-8 character is split across tokens).</param>
/// <param name="Finish">Set on the last step.</param>
public sealed record GeneratedToken(int TokenId, string Text, GenerationFinish? Finish);
