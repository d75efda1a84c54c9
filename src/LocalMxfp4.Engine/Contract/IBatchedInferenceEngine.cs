namespace LocalMxfp4.Engine.Contract;

/// <summary>
/// An engine that runs many sequences in one forward pass over a shared, block-addressed KV memory (the contract a
/// serving layer's continuous batching needs). Each sequence of a step brings its new tokens, the position they start
/// at, and its block table: the ids of the KV blocks that hold its positions, in order. Block <c>i</c> of a table
/// holds positions <c>[i·BlockSize, (i+1)·BlockSize)</c>; the same block id may appear in several tables (a shared
/// prefix) as long as no sequence of the step writes into it.
/// </summary>
public interface IBatchedInferenceEngine : IInferenceEngine
{
    /// <summary>Bytes of KV memory one position takes, over all layers, at <paramref name="precision"/>.</summary>
    long KvBytesPerToken(KvCachePrecision precision);

    /// <summary>
    /// Creates KV memory of <paramref name="blocks"/> blocks of <paramref name="blockSize"/> positions. Backends may
    /// commit the memory lazily as blocks are first written.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The block size is not one the backend supports (the CPU engine needs a multiple of 16).</exception>
    IPagedKvCache CreatePagedKvCache(int blocks, int blockSize, KvCachePrecision precision);

    /// <summary>
    /// Runs one step: every sequence's new tokens, at its positions, attending to its cached positions through its
    /// block table, and writes their keys and values into its blocks. Logits rows are written for the last
    /// <see cref="BatchSequence.LogitRows"/> tokens of each sequence, sequence after sequence, <c>[rows, vocabulary]</c>.
    /// A sequence's results do not depend on which other sequences share the step.
    /// </summary>
    /// <exception cref="ArgumentException">A token id, position, block id or the logits buffer is out of range.</exception>
    void ForwardBatch(IPagedKvCache cache, ReadOnlySpan<BatchSequence> batch, Span<float> logits);
}

/// <summary>One sequence's share of a batched step.</summary>
/// <param name="Tokens">The new tokens (a prefill chunk, or one decode token).</param>
/// <param name="Position">Positions already cached for this sequence; the new tokens take the next ones.</param>
/// <param name="BlockTable">KV block ids covering at least <c>Position + Tokens.Length</c> positions.</param>
/// <param name="LogitRows">How many of the last tokens need logits: 0 (a prefill chunk that is not the last), 1 (the usual), or all.</param>
public readonly record struct BatchSequence(ReadOnlyMemory<int> Tokens, int Position, ReadOnlyMemory<int> BlockTable, int LogitRows);

/// <summary>The number format of cached keys and values.</summary>
public enum KvCachePrecision
{
    /// <summary>float32: the precision of the reference forward (exactness tests use it).</summary>
    Float32 = 0,

    /// <summary>bfloat16: half the memory; keys and values are rounded once when written.</summary>
    BFloat16 = 1,
}

/// <summary>Block-addressed KV memory created by an <see cref="IBatchedInferenceEngine"/>; only that engine can read it.</summary>
public interface IPagedKvCache : IDisposable
{
    /// <summary>Positions per block.</summary>
    int BlockSize { get; }

    /// <summary>Blocks in the memory.</summary>
    int BlockCount { get; }

    /// <summary>The number format.</summary>
    KvCachePrecision Precision { get; }

    /// <summary>Bytes one block takes (all layers, keys and values).</summary>
    long BytesPerBlock { get; }

    /// <summary>Bytes committed so far (memory is committed as blocks are first used).</summary>
    long CommittedBytes { get; }
}
