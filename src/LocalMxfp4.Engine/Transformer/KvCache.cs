namespace LocalMxfp4.Engine.Transformer;

/// <summary>
/// Keys (after RoPE) and values of every cached position, per layer, float32, laid out
/// <c>[position, kvHeads · headDim]</c> so one position's heads are contiguous for the write after each token.
/// </summary>
public sealed class KvCache
{
    private readonly float[][] _keys;
    private readonly float[][] _values;

    /// <summary>Allocates room for <paramref name="capacity"/> positions in <paramref name="layers"/> layers.</summary>
    public KvCache(int layers, int capacity, int width)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        Capacity = capacity;
        Width = width;
        _keys = new float[layers][];
        _values = new float[layers][];
        for (int l = 0; l < layers; l++)
        {
            _keys[l] = new float[(long)capacity * width];
            _values[l] = new float[(long)capacity * width];
        }
    }

    /// <summary>Positions the cache holds.</summary>
    public int Capacity { get; }

    /// <summary>Floats per position (kvHeads · headDim).</summary>
    public int Width { get; }

    /// <summary>Bytes held.</summary>
    public long Bytes => 2L * _keys.Length * Capacity * Width * sizeof(float);

    /// <summary>Layer <paramref name="layer"/>'s whole key array (parallel loops capture arrays, not spans).</summary>
    internal float[] KeyStorage(int layer) => _keys[layer];

    /// <summary>Layer <paramref name="layer"/>'s whole value array.</summary>
    internal float[] ValueStorage(int layer) => _values[layer];

    /// <summary>The key slot of one position.</summary>
    public Span<float> KeyAt(int layer, int position) => _keys[layer].AsSpan(position * Width, Width);

    /// <summary>The value slot of one position.</summary>
    public Span<float> ValueAt(int layer, int position) => _values[layer].AsSpan(position * Width, Width);
}
