namespace LocalMxfp4.Engine.Contract;

/// <summary>More tokens were fed to a session than its KV cache holds.</summary>
public sealed class ContextOverflowException(int position, int requested, int contextLength)
    : InvalidOperationException($"The session holds {position} tokens; {requested} more exceed its context of {contextLength} tokens.")
{
    /// <summary>Tokens already cached.</summary>
    public int Position { get; } = position;

    /// <summary>Tokens the call tried to add.</summary>
    public int Requested { get; } = requested;

    /// <summary>The session's capacity.</summary>
    public int ContextLength { get; } = contextLength;
}
