using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace LocalMxfp4.Numerics.Mxfp4;

/// <summary>
/// Quantizes rows to MXFP4 and back (OCP MX v1.0): 32 consecutive elements share one E8M0 scale byte, each
/// element is an E2M1 nibble, and byte i of a block holds element 2i in the low nibble and 2i + 1 in the high
/// nibble (the gpt-oss / Hugging Face / torchao order). A row whose length is not a multiple of 32 is
/// zero-padded to whole blocks, so its packed form always has <see cref="BlockCount"/> blocks.
/// This is the vectorised path; <see cref="Mxfp4ReferenceCodec"/> is the scalar float64 reference it must equal.
/// </summary>
public static class Mxfp4Codec
{
    /// <summary>Elements per block (the MX "k").</summary>
    public const int BlockSize = 32;

    /// <summary>Packed bytes per block: 32 nibbles.</summary>
    public const int PackedBytesPerBlock = BlockSize / 2;

    /// <summary>The number of blocks a row of <paramref name="length"/> elements occupies (padding included).</summary>
    public static int BlockCount(int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        return (length + BlockSize - 1) / BlockSize;
    }

    /// <summary>Quantizes one float32 row into packed nibbles and scale bytes.</summary>
    /// <param name="row">The values; its length sets the block count.</param>
    /// <param name="packed">At least <c>BlockCount(row.Length) · 16</c> bytes.</param>
    /// <param name="scales">At least <c>BlockCount(row.Length)</c> bytes.</param>
    /// <param name="rule">How each block's scale exponent is chosen.</param>
    public static void QuantizeRow(ReadOnlySpan<float> row, Span<byte> packed, Span<byte> scales, ScaleRule rule)
    {
        int blocks = CheckDestinations(row.Length, packed, scales);
        int full = row.Length / BlockSize;
        for (int b = 0; b < full; b++)
        {
            scales[b] = QuantizeBlock(row.Slice(b * BlockSize, BlockSize), packed.Slice(b * PackedBytesPerBlock, PackedBytesPerBlock), rule);
        }

        if (full < blocks)
        {
            Span<float> padded = stackalloc float[BlockSize];
            padded.Clear();
            row[(full * BlockSize)..].CopyTo(padded);
            scales[full] = QuantizeBlock(padded, packed.Slice(full * PackedBytesPerBlock, PackedBytesPerBlock), rule);
        }
    }

    /// <summary>Quantizes one bfloat16 row (the checkpoint dtype of LLaMA-3) into packed nibbles and scale bytes.</summary>
    public static void QuantizeRow(ReadOnlySpan<BFloat16> row, Span<byte> packed, Span<byte> scales, ScaleRule rule)
    {
        int blocks = CheckDestinations(row.Length, packed, scales);
        ReadOnlySpan<ushort> bits = MemoryMarshal.Cast<BFloat16, ushort>(row);
        Span<float> block = stackalloc float[BlockSize];
        for (int b = 0; b < blocks; b++)
        {
            int start = b * BlockSize;
            int count = Math.Min(BlockSize, row.Length - start);
            block.Clear();
            BFloat16.ToSingle(bits.Slice(start, count), block);
            scales[b] = QuantizeBlock(block, packed.Slice(b * PackedBytesPerBlock, PackedBytesPerBlock), rule);
        }
    }

    /// <summary>Quantizes one float16 row into packed nibbles and scale bytes.</summary>
    public static void QuantizeRow(ReadOnlySpan<Half> row, Span<byte> packed, Span<byte> scales, ScaleRule rule)
    {
        int blocks = CheckDestinations(row.Length, packed, scales);
        Span<float> block = stackalloc float[BlockSize];
        for (int b = 0; b < blocks; b++)
        {
            int start = b * BlockSize;
            int count = Math.Min(BlockSize, row.Length - start);
            block.Clear();
            System.Numerics.Tensors.TensorPrimitives.ConvertToSingle(row.Slice(start, count), block);
            scales[b] = QuantizeBlock(block, packed.Slice(b * PackedBytesPerBlock, PackedBytesPerBlock), rule);
        }
    }

    /// <summary>
    /// Quantizes a row-major matrix <c>[rows, columns]</c> along its columns (the reduction dimension of a
    /// linear layer's weight), giving packed <c>[rows, blocks, 16]</c> and scales <c>[rows, blocks]</c>.
    /// </summary>
    public static void QuantizeMatrix(ReadOnlySpan<float> matrix, int rows, int columns, Span<byte> packed, Span<byte> scales, ScaleRule rule)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        if (matrix.Length != (long)rows * columns)
        {
            throw new ArgumentException($"Matrix has {matrix.Length} elements, expected {rows}×{columns}.", nameof(matrix));
        }

        int blocks = BlockCount(columns);
        for (int r = 0; r < rows; r++)
        {
            QuantizeRow(
                matrix.Slice(r * columns, columns),
                packed.Slice(r * blocks * PackedBytesPerBlock, blocks * PackedBytesPerBlock),
                scales.Slice(r * blocks, blocks),
                rule);
        }
    }

    /// <summary>
    /// Decodes <paramref name="destination"/>.Length elements (padding beyond it is dropped). A NaN scale
    /// decodes its whole block to NaN.
    /// </summary>
    public static void DequantizeRow(ReadOnlySpan<byte> packed, ReadOnlySpan<byte> scales, Span<float> destination)
    {
        int blocks = BlockCount(destination.Length);
        if (scales.Length < blocks || packed.Length < blocks * PackedBytesPerBlock)
        {
            throw new ArgumentException($"A row of {destination.Length} elements needs {blocks} scales and {blocks * PackedBytesPerBlock} packed bytes.");
        }

        ReadOnlySpan<float> values = E2M1.Values;
        for (int b = 0; b < blocks; b++)
        {
            float scale = E8M0.Decode(scales[b]);
            int start = b * BlockSize;
            int count = Math.Min(BlockSize, destination.Length - start);
            ReadOnlySpan<byte> blockBytes = packed.Slice(b * PackedBytesPerBlock, PackedBytesPerBlock);
            for (int i = 0; i < count; i++)
            {
                int nibble = (blockBytes[i >> 1] >> ((i & 1) << 2)) & 0xF;
                destination[start + i] = values[nibble] * scale;
            }
        }
    }

    /// <summary>Quantizes exactly 32 values; returns the scale byte.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static byte QuantizeBlock(ReadOnlySpan<float> block, Span<byte> packed, ScaleRule rule)
    {
        if (block.Length != BlockSize || packed.Length < PackedBytesPerBlock)
        {
            throw new ArgumentException("A block is 32 values into 16 bytes.");
        }

        // |x| compared as integer bits: exact for every finite value, and Inf/NaN patterns sort above all of them,
        // so one integer max finds amax and detects non-finite blocks without NaN-unsafe float max.
        ReadOnlySpan<uint> bits = MemoryMarshal.Cast<float, uint>(block);
        uint amaxBits = 0;
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var maxVec = Vector<uint>.Zero;
            var absMask = new Vector<uint>(0x7FFF_FFFFu);
            for (; i <= BlockSize - Vector<uint>.Count; i += Vector<uint>.Count)
            {
                maxVec = Vector.Max(maxVec, new Vector<uint>(bits.Slice(i)) & absMask);
            }

            for (int lane = 0; lane < Vector<uint>.Count; lane++)
            {
                amaxBits = Math.Max(amaxBits, maxVec[lane]);
            }
        }

        for (; i < BlockSize; i++)
        {
            amaxBits = Math.Max(amaxBits, bits[i] & 0x7FFF_FFFFu);
        }

        if (amaxBits >= 0x7F80_0000u)
        {
            packed[..PackedBytesPerBlock].Clear();
            return E8M0.NaN;
        }

        byte scale = E8M0.FromAmax(BitConverter.UInt32BitsToSingle(amaxBits), rule);
        float inverse = E8M0.InverseScale(scale);
        Span<byte> codes = stackalloc byte[BlockSize];
        EncodeScaled(block, inverse, codes);
        for (int j = 0; j < PackedBytesPerBlock; j++)
        {
            packed[j] = (byte)(codes[2 * j] | (codes[(2 * j) + 1] << 4));
        }

        return scale;
    }

    /// <summary>E2M1 codes of <c>block[i] · inverseScale</c>, RNE with saturation, by counting crossed thresholds.</summary>
    private static void EncodeScaled(ReadOnlySpan<float> block, float inverseScale, Span<byte> codes)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var inv = new Vector<float>(inverseScale);
            var t1 = new Vector<float>(0.25f);
            var t2 = new Vector<float>(0.75f);
            var t3 = new Vector<float>(1.25f);
            var t4 = new Vector<float>(1.75f);
            var t5 = new Vector<float>(2.5f);
            var t6 = new Vector<float>(3.5f);
            var t7 = new Vector<float>(5f);
            for (; i <= BlockSize - Vector<float>.Count; i += Vector<float>.Count)
            {
                var x = new Vector<float>(block.Slice(i)) * inv;
                var m = Vector.Abs(x);
                // Strict '>' where the tie goes down to the even code, '>=' where it goes up to it.
                Vector<int> crossed =
                    Vector.GreaterThan(m, t1) + Vector.GreaterThanOrEqual(m, t2) + Vector.GreaterThan(m, t3) +
                    Vector.GreaterThanOrEqual(m, t4) + Vector.GreaterThan(m, t5) + Vector.GreaterThanOrEqual(m, t6) +
                    Vector.GreaterThan(m, t7);
                Vector<int> sign = Vector.ShiftRightLogical(Vector.AsVectorInt32(x), 31) << 3;
                Vector<int> code = (-crossed) | sign;
                for (int lane = 0; lane < Vector<int>.Count; lane++)
                {
                    codes[i + lane] = (byte)code[lane];
                }
            }
        }

        for (; i < BlockSize; i++)
        {
            codes[i] = (byte)E2M1.Encode(block[i] * inverseScale);
        }
    }

    private static int CheckDestinations(int length, Span<byte> packed, Span<byte> scales)
    {
        int blocks = BlockCount(length);
        if (scales.Length < blocks)
        {
            throw new ArgumentException($"A row of {length} elements needs {blocks} scale bytes, got {scales.Length}.", nameof(scales));
        }

        if (packed.Length < blocks * PackedBytesPerBlock)
        {
            throw new ArgumentException($"A row of {length} elements needs {blocks * PackedBytesPerBlock} packed bytes, got {packed.Length}.", nameof(packed));
        }

        return blocks;
    }
}
