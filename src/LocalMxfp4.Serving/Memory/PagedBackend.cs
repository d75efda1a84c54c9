using LocalMxfp4.Engine.Contract;
using LocalMxfp4.Serving.Scheduling;

namespace LocalMxfp4.Serving.Memory;

/// <summary>
/// Paged KV memory for an <see cref="IBatchedInferenceEngine"/>: one pool of fixed-size blocks shared by every
/// sequence through its block table, a <see cref="PrefixCache"/> over full blocks, and one batched forward per step.
/// </summary>
internal sealed class PagedBackend : IStepBackend
{
    private readonly IBatchedInferenceEngine _engine;
    private readonly IPagedKvCache _cache;
    private readonly KvBlockPool _pool;
    private readonly PrefixCache? _prefix;
    private readonly int _blockSize;
    private BatchSequence[] _batch = new BatchSequence[8];

    public PagedBackend(IBatchedInferenceEngine engine, ServingOptions options, long kvTokens)
    {
        _engine = engine;
        _blockSize = options.KvBlockSize;
        int blocks = checked((int)((kvTokens + _blockSize - 1) / _blockSize));
        _cache = engine.CreatePagedKvCache(blocks, _blockSize, options.KvCachePrecision);
        _prefix = options.PrefixCaching ? new PrefixCache(blocks, _blockSize) : null;
        _pool = new KvBlockPool(blocks, block => _prefix?.Remove(block));
    }

    public KvMemoryStatistics Statistics =>
        new(_blockSize, _pool.Total, _pool.InUse, _pool.Idle, _pool.Free, _cache.CommittedBytes, _pool.Evictions);

    public bool TryAdmit(Sequence sequence)
    {
        var table = new BlockTable();
        ulong parent = PrefixCache.Root;
        if (_prefix is not null)
        {
            // Only whole blocks that end before the last token: at least one token must run to give the logits, and it
            // may not be written into a block other sequences share.
            ReadOnlySpan<int> tokens = sequence.Tokens;
            for (int start = 0; start + _blockSize <= tokens.Length - 1; start += _blockSize)
            {
                ReadOnlySpan<int> chunk = tokens.Slice(start, _blockSize);
                ulong hash = PrefixCache.Hash(parent, chunk);
                if (!_prefix.TryFind(parent, chunk, hash, out int block))
                {
                    break;
                }

                _pool.Acquire(block);
                table.Add(block);
                parent = hash;
            }
        }

        table.Registered = table.Count;
        table.LastHash = parent;
        sequence.Memory = table;
        sequence.Computed = table.Count * _blockSize;
        return true;
    }

    public bool TryReserve(Sequence sequence, int positions)
    {
        var table = (BlockTable)sequence.Memory!;
        int needed = ((positions + _blockSize - 1) / _blockSize) - table.Count;
        if (needed <= 0)
        {
            return true;
        }

        if (needed > _pool.Available)
        {
            return false;
        }

        for (int i = 0; i < needed; i++)
        {
            table.Add(_pool.Allocate());
        }

        return true;
    }

    public void OnComputed(Sequence sequence)
    {
        if (_prefix is null)
        {
            return;
        }

        var table = (BlockTable)sequence.Memory!;
        ReadOnlySpan<int> tokens = sequence.Tokens;
        while ((table.Registered + 1) * _blockSize <= sequence.Computed)
        {
            int block = table.Blocks[table.Registered];
            ReadOnlySpan<int> chunk = tokens.Slice(table.Registered * _blockSize, _blockSize);
            ulong hash = PrefixCache.Hash(table.LastHash, chunk);
            _prefix.TryAdd(block, table.LastHash, chunk, hash);
            table.LastHash = hash;
            table.Registered++;
        }
    }

    public void Release(Sequence sequence)
    {
        if (sequence.Memory is not BlockTable table)
        {
            return;
        }

        // Last blocks first into the idle list, so a prefix's tail is evicted before its head (which more requests share).
        for (int i = table.Count - 1; i >= 0; i--)
        {
            int block = table.Blocks[i];
            _pool.Release(block, _prefix?.IsCached(block) == true);
        }

        sequence.Memory = null;
    }

    public void Run(IReadOnlyList<ScheduledChunk> chunks, Span<float> logits)
    {
        if (_batch.Length < chunks.Count)
        {
            _batch = new BatchSequence[Math.Max(chunks.Count, _batch.Length * 2)];
        }

        for (int i = 0; i < chunks.Count; i++)
        {
            ScheduledChunk c = chunks[i];
            var table = (BlockTable)c.Sequence.Memory!;
            _batch[i] = new BatchSequence(c.Sequence.TokenMemory(c.Start, c.Count), c.Start, table.Blocks.AsMemory(0, table.Count), c.WantsLogits ? 1 : 0);
        }

        _engine.ForwardBatch(_cache, _batch.AsSpan(0, chunks.Count), logits);
    }

    public void Dispose() => _cache.Dispose();

    /// <summary>A sequence's block ids in position order, and how many of them the prefix cache has seen.</summary>
    private sealed class BlockTable
    {
        public int[] Blocks { get; private set; } = new int[8];

        public int Count { get; private set; }

        /// <summary>Leading blocks already offered to the prefix cache.</summary>
        public int Registered { get; set; }

        /// <summary>The chained hash of the first <see cref="Registered"/> blocks.</summary>
        public ulong LastHash { get; set; }

        public void Add(int block)
        {
            if (Count == Blocks.Length)
            {
                int[] grown = new int[Blocks.Length * 2];
                Blocks.CopyTo(grown, 0);
                Blocks = grown;
            }

            Blocks[Count++] = block;
        }
    }
}
