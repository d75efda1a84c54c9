using LocalMxfp4.Engine.Sampling;

namespace LocalMxfp4.Serving;

/// <summary>What one sequence should generate. Fully resolved before it is submitted.</summary>
public sealed class SequenceRequest
{
    /// <summary>The prompt, special tokens included (at least one token).</summary>
    public required IReadOnlyList<int> PromptTokenIds { get; init; }

    /// <summary>Token choice; penalties look at the reply only, never the prompt (OpenAI semantics).</summary>
    public SamplingOptions Sampling { get; init; } = SamplingOptions.Greedy;

    /// <summary>Tokens to generate at most (the stop token counts); also bounded by the context.</summary>
    public required int MaxOutputTokens { get; init; }

    /// <summary>Ids that end the reply when sampled (reported, never fed back).</summary>
    public IReadOnlySet<int> StopTokenIds { get; init; } = new HashSet<int>();

    /// <summary>Constrained decoding, or null.</summary>
    public ILogitsProcessor? LogitsProcessor { get; init; }

    /// <summary>Receives the tokens and the end of the sequence.</summary>
    public required ISequenceObserver Observer { get; init; }

    /// <summary>Cancels the sequence: removed at once while queued, stopped before its next step while running.</summary>
    public CancellationToken CancellationToken { get; init; }
}
