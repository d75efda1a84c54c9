namespace LocalMxfp4.Serving.Memory;

/// <summary>
/// Block bookkeeping of a paged KV memory: reference counts, the free list, and the least-recently-used list of idle
/// blocks the prefix cache still indexes. A block is free (holds nothing), in use (referenced by running sequences),
/// or idle-cached (no references, still findable by its prefix). Allocation takes a free block, else evicts the
/// least recently released idle one.
/// </summary>
internal sealed class KvBlockPool
{
    private readonly int[] _references;
    private readonly Stack<int> _free;
    private readonly LinkedList<int> _idle = new();
    private readonly LinkedListNode<int>?[] _idleNodes;
    private readonly Action<int> _onEvict;

    /// <summary>A pool of <paramref name="blocks"/> blocks; <paramref name="onEvict"/> is told when an idle cached block is reused.</summary>
    public KvBlockPool(int blocks, Action<int> onEvict)
    {
        _references = new int[blocks];
        _idleNodes = new LinkedListNode<int>?[blocks];
        _onEvict = onEvict;
        // Low ids first: the engine commits memory in segments of consecutive blocks as they are first used.
        _free = new Stack<int>(Enumerable.Range(0, blocks).Reverse());
        Total = blocks;
    }

    public int Total { get; }

    public int Free => _free.Count;

    public int Idle => _idle.Count;

    public int InUse => Total - Free - Idle;

    /// <summary>Blocks an allocation can get now (free plus evictable).</summary>
    public int Available => _free.Count + _idle.Count;

    public long Evictions { get; private set; }

    public int References(int block) => _references[block];

    /// <summary>A block with one reference: a free one, else the least recently used idle one (evicted from the prefix cache).</summary>
    public int Allocate()
    {
        int block;
        if (_free.Count > 0)
        {
            block = _free.Pop();
        }
        else if (_idle.First is { } oldest)
        {
            block = oldest.Value;
            _idle.RemoveFirst();
            _idleNodes[block] = null;
            _onEvict(block);
            Evictions++;
        }
        else
        {
            throw new InvalidOperationException("The KV block pool is exhausted.");
        }

        _references[block] = 1;
        return block;
    }

    /// <summary>Adds a reference to a block found in the prefix cache (it leaves the idle list if it was there).</summary>
    public void Acquire(int block)
    {
        if (_references[block]++ == 0 && _idleNodes[block] is { } node)
        {
            _idle.Remove(node);
            _idleNodes[block] = null;
        }
    }

    /// <summary>Drops a reference; an unreferenced block becomes idle when <paramref name="cached"/>, else free.</summary>
    public void Release(int block, bool cached)
    {
        if (_references[block] <= 0)
        {
            throw new InvalidOperationException($"KV block {block} released more often than acquired.");
        }

        if (--_references[block] > 0)
        {
            return;
        }

        if (cached)
        {
            _idleNodes[block] = _idle.AddLast(block);
        }
        else
        {
            _free.Push(block);
        }
    }

    /// <summary>Frees an idle block that is no longer cached (its prefix entry was replaced).</summary>
    public void Uncache(int block)
    {
        if (_idleNodes[block] is { } node)
        {
            _idle.Remove(node);
            _idleNodes[block] = null;
            _free.Push(block);
        }
    }
}
