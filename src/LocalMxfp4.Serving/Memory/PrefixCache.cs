namespace LocalMxfp4.Serving.Memory;

/// <summary>
/// Finds KV blocks by the tokens they hold and every token before them: each full block is keyed by a 64-bit hash
/// chained over its parent block's hash and its own tokens (vLLM's automatic prefix caching; a radix tree in the
/// SGLang sense, stored as a hash chain). A hit is confirmed by comparing the block's tokens and its parent's hash,
/// so only a 64-bit collision of the whole chain could return a wrong block.
/// </summary>
internal sealed class PrefixCache
{
    /// <summary>The parent hash of a sequence's first block.</summary>
    public const ulong Root = 0x9E3779B97F4A7C15UL;

    private readonly int _blockSize;
    private readonly Dictionary<ulong, int> _byHash = [];
    private readonly ulong[] _hash;
    private readonly ulong[] _parent;
    private readonly bool[] _cached;
    private readonly int[] _tokens;

    public PrefixCache(int blocks, int blockSize)
    {
        _blockSize = blockSize;
        _hash = new ulong[blocks];
        _parent = new ulong[blocks];
        _cached = new bool[blocks];
        _tokens = new int[(long)blocks * blockSize];
    }

    /// <summary>Blocks indexed now.</summary>
    public int Count => _byHash.Count;

    /// <summary>Whether <paramref name="block"/> is indexed (it then stays findable while idle).</summary>
    public bool IsCached(int block) => _cached[block];

    /// <summary>The chained hash of a block holding <paramref name="tokens"/> after a prefix hashing to <paramref name="parent"/>.</summary>
    public static ulong Hash(ulong parent, ReadOnlySpan<int> tokens)
    {
        ulong h = parent;
        foreach (int t in tokens)
        {
            h = Mix(h ^ (uint)t);
        }

        return Mix(h ^ (ulong)tokens.Length);
    }

    /// <summary>The block holding <paramref name="tokens"/> after the prefix <paramref name="parent"/>, if cached.</summary>
    public bool TryFind(ulong parent, ReadOnlySpan<int> tokens, ulong hash, out int block)
    {
        if (_byHash.TryGetValue(hash, out block) && _parent[block] == parent
            && tokens.SequenceEqual(_tokens.AsSpan((int)((long)block * _blockSize), _blockSize)))
        {
            return true;
        }

        block = -1;
        return false;
    }

    /// <summary>Indexes a just-filled block; false when another block already holds the same prefix (this one then stays private).</summary>
    public bool TryAdd(int block, ulong parent, ReadOnlySpan<int> tokens, ulong hash)
    {
        if (_cached[block] || !_byHash.TryAdd(hash, block))
        {
            return false;
        }

        _hash[block] = hash;
        _parent[block] = parent;
        _cached[block] = true;
        tokens.CopyTo(_tokens.AsSpan((int)((long)block * _blockSize), _blockSize));
        return true;
    }

    /// <summary>Forgets an evicted block.</summary>
    public void Remove(int block)
    {
        if (_cached[block])
        {
            _byHash.Remove(_hash[block]);
            _cached[block] = false;
        }
    }

    /// <summary>SplitMix64's finaliser: every input bit affects every output bit.</summary>
    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
