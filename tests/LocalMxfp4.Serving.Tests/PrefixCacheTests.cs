using LocalMxfp4.Serving.Memory;

namespace LocalMxfp4.Serving.Tests;

/// <summary>The block bookkeeping on its own: reference counts, LRU eviction, the hash chain's checks.</summary>
public class PrefixCacheTests
{
    [Fact]
    public void ABlockIsFoundOnlyAfterTheSamePrefix()
    {
        var cache = new PrefixCache(8, 4);
        int[] a = [1, 2, 3, 4], b = [5, 6, 7, 8];
        ulong ha = PrefixCache.Hash(PrefixCache.Root, a);
        ulong hb = PrefixCache.Hash(ha, b);
        Assert.True(cache.TryAdd(0, PrefixCache.Root, a, ha));
        Assert.True(cache.TryAdd(1, ha, b, hb));
        Assert.True(cache.TryFind(ha, b, hb, out int found));
        Assert.Equal(1, found);

        // The same tokens after another prefix hash differently, and a forged hash is caught by the parent check.
        ulong other = PrefixCache.Hash(PrefixCache.Root, [9, 9, 9, 9]);
        Assert.False(cache.TryFind(other, b, PrefixCache.Hash(other, b), out _));
        Assert.False(cache.TryFind(other, b, hb, out _));
        Assert.False(cache.TryFind(ha, [5, 6, 7, 0], hb, out _));

        // A second block with the same prefix stays private.
        Assert.False(cache.TryAdd(2, ha, b, hb));
        cache.Remove(1);
        Assert.False(cache.TryFind(ha, b, hb, out _));
        Assert.Equal(1, cache.Count);
    }

    [Fact]
    public void IdleCachedBlocksAreEvictedLeastRecentlyUsedFirst()
    {
        var evicted = new List<int>();
        var pool = new KvBlockPool(3, evicted.Add);
        int x = pool.Allocate(), y = pool.Allocate(), z = pool.Allocate();
        Assert.Equal([0, 1, 2], new[] { x, y, z });
        Assert.Equal(0, pool.Available);
        pool.Release(y, cached: true);
        pool.Release(x, cached: true);
        pool.Release(z, cached: false);
        Assert.Equal(3, pool.Available);
        Assert.Equal(z, pool.Allocate()); // a free block before any eviction
        pool.Acquire(x);                  // a prefix hit takes x off the idle list
        Assert.Equal(y, pool.Allocate()); // y is the only idle block left
        Assert.Equal([y], evicted);
        Assert.Throws<InvalidOperationException>(() => pool.Allocate());
        pool.Release(x, cached: true);
        pool.Release(y, cached: false);
        pool.Release(z, cached: false);
        Assert.Throws<InvalidOperationException>(() => pool.Release(z, cached: false));
        Assert.Equal(0, pool.InUse);
    }
}
