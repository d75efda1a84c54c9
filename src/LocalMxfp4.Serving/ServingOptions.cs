using LocalMxfp4.Engine.Contract;

namespace LocalMxfp4.Serving;

/// <summary>How a <see cref="ServingEngine"/> batches, how much KV memory it keeps, and how long requests may be.</summary>
public sealed record ServingOptions
{
    /// <summary>Positions a sequence may hold: prompt plus reply.</summary>
    public required int ContextLength { get; init; }

    /// <summary>Sequences generating at the same time (the batch size); more wait in the queue.</summary>
    public int MaxBatchSequences { get; init; } = 4;

    /// <summary>
    /// Tokens one step processes at most: every running sequence's decode token first, then prefill chunks of
    /// the others. Bounds how long a long prompt holds up the sequences that are decoding.
    /// </summary>
    public int MaxBatchTokens { get; init; } = 256;

    /// <summary>Requests allowed to wait for admission; one more is refused with <see cref="ServingQueueFullException"/>.</summary>
    public int MaxQueuedRequests { get; init; } = 256;

    /// <summary>
    /// Positions of KV memory in the shared pool (running sequences and cached prefixes together). Null: room for every
    /// sequence of a full batch to reach <see cref="ContextLength"/>, capped at a quarter of the memory the process may
    /// use (never below one full context). Rounded up to whole blocks.
    /// </summary>
    public long? KvCacheTokens { get; init; }

    /// <summary>Positions per KV block (the unit of sharing and eviction). The CPU engine needs a multiple of 16.</summary>
    public int KvBlockSize { get; init; } = 16;

    /// <summary>Number format of cached keys and values (float32 keeps the reference forward's exact numbers).</summary>
    public KvCachePrecision KvCachePrecision { get; init; } = KvCachePrecision.Float32;

    /// <summary>Reuse the KV blocks of earlier requests (other users' and earlier turns') that share a prompt prefix.</summary>
    public bool PrefixCaching { get; init; } = true;

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first invalid setting.</summary>
    public void Validate()
    {
        if (ContextLength < 2)
        {
            throw new ArgumentOutOfRangeException(nameof(ContextLength), ContextLength, "ContextLength must be ≥ 2.");
        }

        if (MaxBatchSequences < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxBatchSequences), MaxBatchSequences, "MaxBatchSequences must be ≥ 1.");
        }

        if (MaxBatchTokens < MaxBatchSequences)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxBatchTokens), MaxBatchTokens, $"MaxBatchTokens must be at least MaxBatchSequences ({MaxBatchSequences}): every running sequence decodes one token per step.");
        }

        if (MaxQueuedRequests < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxQueuedRequests), MaxQueuedRequests, "MaxQueuedRequests must be ≥ 1.");
        }

        if (KvBlockSize < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(KvBlockSize), KvBlockSize, "KvBlockSize must be ≥ 1.");
        }

        if (KvCacheTokens is long tokens && tokens < ContextLength)
        {
            throw new ArgumentOutOfRangeException(nameof(KvCacheTokens), tokens, $"KvCacheTokens must hold at least one full context ({ContextLength} tokens), so every request that fits the context can complete.");
        }

        if (!Enum.IsDefined(KvCachePrecision))
        {
            throw new ArgumentOutOfRangeException(nameof(KvCachePrecision), KvCachePrecision, "Unknown KV cache precision.");
        }
    }
}
