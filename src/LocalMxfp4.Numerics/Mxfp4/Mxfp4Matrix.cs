namespace LocalMxfp4.Numerics.Mxfp4;

/// <summary>
/// A weight matrix <c>[Rows, Columns]</c> in MXFP4 along its columns (the reduction dimension): packed nibbles
/// <c>[Rows, Blocks, 16]</c> and E8M0 scales <c>[Rows, Blocks]</c>, exactly the on-disk planes.
/// </summary>
public sealed class Mxfp4Matrix
{
    /// <summary>Wraps existing planes (not copied) after checking their sizes.</summary>
    public Mxfp4Matrix(int rows, int columns, byte[] packed, byte[] scales)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(columns);
        ArgumentNullException.ThrowIfNull(packed);
        ArgumentNullException.ThrowIfNull(scales);
        Rows = rows;
        Columns = columns;
        Blocks = Mxfp4Codec.BlockCount(columns);
        if (packed.LongLength != (long)rows * Blocks * Mxfp4Codec.PackedBytesPerBlock)
        {
            throw new ArgumentException($"A {rows}×{columns} MXFP4 matrix has {(long)rows * Blocks * 16} packed bytes, got {packed.LongLength}.", nameof(packed));
        }

        if (scales.LongLength != (long)rows * Blocks)
        {
            throw new ArgumentException($"A {rows}×{columns} MXFP4 matrix has {(long)rows * Blocks} scale bytes, got {scales.LongLength}.", nameof(scales));
        }

        Packed = packed;
        Scales = scales;
    }

    /// <summary>Output rows.</summary>
    public int Rows { get; }

    /// <summary>Logical input columns (before padding to whole blocks).</summary>
    public int Columns { get; }

    /// <summary>32-element blocks per row.</summary>
    public int Blocks { get; }

    /// <summary>Packed nibbles, row-major <c>[Rows, Blocks, 16]</c>.</summary>
    public byte[] Packed { get; }

    /// <summary>E8M0 bytes, row-major <c>[Rows, Blocks]</c>.</summary>
    public byte[] Scales { get; }

    /// <summary>Bytes of weight data (nibbles plus scales).</summary>
    public long Bytes => Packed.LongLength + Scales.LongLength;

    /// <summary>Quantizes a float32 row-major matrix.</summary>
    public static Mxfp4Matrix Quantize(ReadOnlySpan<float> matrix, int rows, int columns, ScaleRule rule)
    {
        int blocks = Mxfp4Codec.BlockCount(columns);
        var packed = new byte[(long)rows * blocks * 16];
        var scales = new byte[(long)rows * blocks];
        Mxfp4Codec.QuantizeMatrix(matrix, rows, columns, packed, scales, rule);
        return new Mxfp4Matrix(rows, columns, packed, scales);
    }

    /// <summary>Decodes row <paramref name="row"/> into <paramref name="destination"/> (Columns floats).</summary>
    public void DequantizeRow(int row, Span<float> destination) =>
        Mxfp4Codec.DequantizeRow(
            Packed.AsSpan(row * Blocks * 16, Blocks * 16),
            Scales.AsSpan(row * Blocks, Blocks),
            destination[..Columns]);

    /// <summary>Decodes the whole matrix to float32 <c>[Rows, Columns]</c>.</summary>
    public float[] Dequantize()
    {
        var result = new float[(long)Rows * Columns];
        for (int r = 0; r < Rows; r++)
        {
            DequantizeRow(r, result.AsSpan(r * Columns, Columns));
        }

        return result;
    }
}
