using LocalMxfp4.Engine.Contract;
using LocalMxfp4.Models.Configuration;

namespace LocalMxfp4.Engine.Attention;

/// <summary>
/// The CPU engine's KV memory: <see cref="BlockCount"/> blocks of <see cref="BlockSize"/> positions, per layer. Inside a
/// block, keys are stored per KV head transposed, <c>[headDim, BlockSize]</c>, so the scores of a block's positions for
/// one query are one vector per head dimension; values per KV head <c>[BlockSize, headDim]</c>, so a position's value
/// row is contiguous. Blocks are committed in segments when first written, so a large pool costs memory only as it fills.
/// </summary>
public sealed class PagedKvCache : IPagedKvCache
{
    /// <summary>Block sizes must be a multiple of this (one 512-bit vector of float32 scores).</summary>
    public const int BlockSizeMultiple = 16;

    private const int MaxSegmentBlocks = 32;

    private readonly int _layers;
    private readonly int _segmentBlocks;
    private readonly float[]?[][] _keys32;
    private readonly float[]?[][] _values32;
    private readonly ushort[]?[][] _keys16;
    private readonly ushort[]?[][] _values16;
    private long _committed;

    /// <summary>Describes (and lazily allocates) the memory for <paramref name="config"/>.</summary>
    public PagedKvCache(LlamaConfig config, int blocks, int blockSize, KvCachePrecision precision)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(blocks);
        if (blockSize <= 0 || blockSize % BlockSizeMultiple != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(blockSize), blockSize, $"The CPU engine's KV block size must be a positive multiple of {BlockSizeMultiple}.");
        }

        if (!Enum.IsDefined(precision))
        {
            throw new ArgumentOutOfRangeException(nameof(precision), precision, "Unknown KV cache precision.");
        }

        _layers = config.LayerCount;
        KeyValueHeads = config.KeyValueHeadCount;
        HeadDim = config.HeadDim;
        BlockSize = blockSize;
        BlockCount = blocks;
        Precision = precision;
        BlockStride = (long)KeyValueHeads * HeadDim * blockSize;
        if (BlockStride * Math.Min(blocks, MaxSegmentBlocks) > Array.MaxLength)
        {
            throw new ArgumentOutOfRangeException(nameof(blockSize), blockSize, "A KV block of this size does not fit an array.");
        }

        _segmentBlocks = Math.Min(blocks, MaxSegmentBlocks);
        int segments = (blocks + _segmentBlocks - 1) / _segmentBlocks;
        int elementBytes = precision == KvCachePrecision.Float32 ? sizeof(float) : sizeof(ushort);
        BytesPerBlock = 2L * _layers * BlockStride * elementBytes;
        _keys32 = new float[]?[_layers][];
        _values32 = new float[]?[_layers][];
        _keys16 = new ushort[]?[_layers][];
        _values16 = new ushort[]?[_layers][];
        for (int l = 0; l < _layers; l++)
        {
            _keys32[l] = new float[]?[precision == KvCachePrecision.Float32 ? segments : 0];
            _values32[l] = new float[]?[precision == KvCachePrecision.Float32 ? segments : 0];
            _keys16[l] = new ushort[]?[precision == KvCachePrecision.BFloat16 ? segments : 0];
            _values16[l] = new ushort[]?[precision == KvCachePrecision.BFloat16 ? segments : 0];
        }
    }

    /// <inheritdoc />
    public int BlockSize { get; }

    /// <inheritdoc />
    public int BlockCount { get; }

    /// <inheritdoc />
    public KvCachePrecision Precision { get; }

    /// <inheritdoc />
    public long BytesPerBlock { get; }

    /// <inheritdoc />
    public long CommittedBytes => Interlocked.Read(ref _committed);

    /// <summary>KV heads per layer.</summary>
    public int KeyValueHeads { get; }

    /// <summary>Width of one head.</summary>
    public int HeadDim { get; }

    /// <summary>Elements of one layer's keys (or values) in one block.</summary>
    public long BlockStride { get; }

    /// <summary>Bytes one position takes over all layers (keys and values).</summary>
    public static long BytesPerToken(LlamaConfig config, KvCachePrecision precision) =>
        2L * config.LayerCount * config.KeyValueWidth * (precision == KvCachePrecision.Float32 ? sizeof(float) : sizeof(ushort));

    /// <summary>Commits the segments holding <paramref name="blocks"/> (called before a step writes into them).</summary>
    internal void Commit(ReadOnlySpan<int> blocks)
    {
        foreach (int block in blocks)
        {
            if ((uint)block >= (uint)BlockCount)
            {
                throw new ArgumentException($"KV block id {block} is outside the cache's {BlockCount} blocks.", nameof(blocks));
            }

            int segment = block / _segmentBlocks;
            if (Precision == KvCachePrecision.Float32 ? _keys32[0][segment] is not null : _keys16[0][segment] is not null)
            {
                continue;
            }

            int count = Math.Min(_segmentBlocks, BlockCount - (segment * _segmentBlocks));
            long elements = count * BlockStride;
            for (int l = 0; l < _layers; l++)
            {
                if (Precision == KvCachePrecision.Float32)
                {
                    _keys32[l][segment] = new float[elements];
                    _values32[l][segment] = new float[elements];
                }
                else
                {
                    _keys16[l][segment] = new ushort[elements];
                    _values16[l][segment] = new ushort[elements];
                }
            }

            Interlocked.Add(ref _committed, count * BytesPerBlock);
        }
    }

    /// <summary>The float32 key array and offset of <paramref name="block"/> in <paramref name="layer"/> (committed).</summary>
    internal (float[] Array, int Offset) Keys32(int layer, int block) => (_keys32[layer][block / _segmentBlocks]!, (int)((block % _segmentBlocks) * BlockStride));

    /// <summary>The float32 value array and offset of <paramref name="block"/>.</summary>
    internal (float[] Array, int Offset) Values32(int layer, int block) => (_values32[layer][block / _segmentBlocks]!, (int)((block % _segmentBlocks) * BlockStride));

    /// <summary>The bfloat16 key array and offset of <paramref name="block"/>.</summary>
    internal (ushort[] Array, int Offset) Keys16(int layer, int block) => (_keys16[layer][block / _segmentBlocks]!, (int)((block % _segmentBlocks) * BlockStride));

    /// <summary>The bfloat16 value array and offset of <paramref name="block"/>.</summary>
    internal (ushort[] Array, int Offset) Values16(int layer, int block) => (_values16[layer][block / _segmentBlocks]!, (int)((block % _segmentBlocks) * BlockStride));

    /// <inheritdoc />
    public void Dispose()
    {
        // Managed memory: released with the object. Nothing to free eagerly.
    }
}
