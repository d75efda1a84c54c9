using LocalMxfp4.Serving.Scheduling;

namespace LocalMxfp4.Serving.Memory;

/// <summary>
/// KV memory and the forward pass as the scheduler sees them: admit a sequence (reusing what memory already holds of
/// its prefix), reserve positions for its next chunk, release it, and run a step. Two implementations: paged blocks
/// shared through a prefix cache for engines with batched steps (<see cref="PagedBackend"/>), and one session per
/// batch slot for engines without (<see cref="SessionSlotBackend"/>).
/// </summary>
internal interface IStepBackend : IDisposable
{
    /// <summary>Gives a waiting sequence memory, setting <see cref="Sequence.Computed"/> to the prefix it reuses; false when there is no room now.</summary>
    bool TryAdmit(Sequence sequence);

    /// <summary>Makes room for <paramref name="positions"/> positions of an admitted sequence (evicting idle cached prefixes); false when memory is full.</summary>
    bool TryReserve(Sequence sequence, int positions);

    /// <summary>Called after a step computed more of the sequence's tokens (full blocks become shareable).</summary>
    void OnComputed(Sequence sequence);

    /// <summary>Returns the sequence's memory; what it computed stays cached for later requests while memory allows.</summary>
    void Release(Sequence sequence);

    /// <summary>Runs one step; logits rows are written for the chunks that want them, in order.</summary>
    void Run(IReadOnlyList<ScheduledChunk> chunks, Span<float> logits);

    /// <summary>The memory's state now.</summary>
    KvMemoryStatistics Statistics { get; }
}

/// <summary>One sequence's share of a step: tokens <c>[Start, Start + Count)</c> of it.</summary>
internal readonly record struct ScheduledChunk(Sequence Sequence, int Start, int Count, bool WantsLogits);

/// <summary>A snapshot of KV memory.</summary>
/// <param name="BlockSize">Positions per block (for session slots: the context length).</param>
/// <param name="TotalBlocks">Blocks in the pool (for session slots: the slots).</param>
/// <param name="BlocksInUse">Blocks held by running sequences.</param>
/// <param name="CachedBlocks">Idle blocks kept for prefix reuse (evicted first when memory is needed).</param>
/// <param name="FreeBlocks">Blocks holding nothing.</param>
/// <param name="CommittedBytes">Memory committed so far.</param>
/// <param name="Evictions">Cached blocks evicted to make room.</param>
public sealed record KvMemoryStatistics(int BlockSize, int TotalBlocks, int BlocksInUse, int CachedBlocks, int FreeBlocks, long CommittedBytes, long Evictions);
