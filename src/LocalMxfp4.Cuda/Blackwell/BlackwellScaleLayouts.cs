namespace LocalMxfp4.Cuda.Blackwell;

/// <summary>
/// Scale operands of the sm_120a <c>mma.sync.aligned.m16n8k64 … kind::mxf4.block_scale.scale_vec::2X … ue8m0</c>
/// (kernel <c>lmx_gemm_mxf4_sm120</c>), produced from our E8M0 planes <c>[rows, blocks]</c>.
/// One 32-bit scale register carries the E8M0 bytes of four consecutive 32-blocks (K = 128) of one row, low byte first;
/// the instruction's byte-id 0 takes bytes 0–1 (the two blocks of the first k64 step) and byte-id 2 bytes 2–3.
/// With thread-id-a = 0, lane 4g supplies row g of the 16-row A tile and lane 4g+1 row g+8; with thread-id-b = 0 lane 4g
/// supplies column g of the 8-column B tile. Rows padded with zero blocks to a multiple of 4 make every register an
/// aligned word of the padded plane, which is what the kernel loads.
/// </summary>
public static class Sm120ScaleLayout
{
    /// <summary>Pads a <c>[rows, blocks]</c> plane to <c>[rows, PaddedBlocks]</c> (zero bytes) and returns it as the registers, <c>[rows, PaddedBlocks / 4]</c>.</summary>
    public static uint[] Registers(ReadOnlySpan<byte> scales, int rows, int blocks)
    {
        int padded = (blocks + 3) / 4 * 4, words = padded / 4;
        if (scales.Length != rows * blocks)
        {
            throw new ArgumentException($"Expected {rows}×{blocks} scale bytes, got {scales.Length}.", nameof(scales));
        }

        var result = new uint[rows * words];
        for (int r = 0; r < rows; r++)
        {
            for (int b = 0; b < blocks; b++)
            {
                result[(r * words) + (b / 4)] |= (uint)scales[(r * blocks) + b] << (8 * (b % 4));
            }
        }

        return result;
    }

    /// <summary>
    /// Which (row of the tile, 32-block) a scale byte feeds: for the A operand of a 16×K tile, lane <paramref name="lane"/>'s
    /// register for K group <paramref name="group"/> (K = 128·group …), byte <paramref name="byteIndex"/>; null when the
    /// instruction ignores that lane (thread-id-a = 0 reads lanes with lane % 4 ∈ {0, 1}).
    /// </summary>
    public static (int Row, int Block)? ScaleASource(int lane, int group, int byteIndex)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(lane);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(lane, 31);
        ArgumentOutOfRangeException.ThrowIfNegative(byteIndex);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(byteIndex, 3);
        int t = lane & 3, g = lane >> 2;
        return t switch
        {
            0 => (g, (4 * group) + byteIndex),
            1 => (g + 8, (4 * group) + byteIndex),
            _ => null,
        };
    }

    /// <summary>The B-operand counterpart: lane 4g supplies column g (a weight row) of the 8-column tile; other lanes are ignored.</summary>
    public static (int Column, int Block)? ScaleBSource(int lane, int group, int byteIndex)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(lane);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(lane, 31);
        ArgumentOutOfRangeException.ThrowIfNegative(byteIndex);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(byteIndex, 3);
        return (lane & 3) == 0 ? (lane >> 2, (4 * group) + byteIndex) : null;
    }

    /// <summary>The 32-block a k64 step reads through byte-id <paramref name="byteId"/> (0 or 2) for its k half <paramref name="half"/> (0: k 0–31, 1: k 32–63).</summary>
    public static int BlockOfStep(int group, int byteId, int half)
    {
        if (byteId is not (0 or 2))
        {
            throw new ArgumentOutOfRangeException(nameof(byteId), byteId, "scale_vec::2X takes byte-id 0 or 2.");
        }

        return (4 * group) + byteId + half;
    }
}

/// <summary>
/// The scale-factor layout of Blackwell datacenter block-scaled MMA (<c>tcgen05.mma … kind::mxf4.block_scale</c>) and
/// cuBLASLt <c>VEC32_UE8M0</c>: 512-byte atoms of 128 rows × 4 K-blocks, byte (r, j) of an atom at
/// <c>16·(r mod 32) + 4·((r mod 128) / 32) + (j mod 4)</c>, atoms ordered K-first within a 128-row band; rows padded to
/// 128 and blocks to 4 with zero bytes. Produced from our E8M0 plane for a future sm_100a kernel (none runs here:
/// the tcgen05 path is not implemented; see README).
/// </summary>
public static class Sm100ScaleLayout
{
    /// <summary>Bytes of the swizzled buffer for <paramref name="rows"/> × <paramref name="blocks"/>.</summary>
    public static int Size(int rows, int blocks) => ((rows + 127) / 128) * ((blocks + 3) / 4) * 512;

    /// <summary>Offset of (row, block) in the swizzled buffer.</summary>
    public static int Offset(int row, int block, int blocks)
    {
        int atomsAlongK = (blocks + 3) / 4;
        int atom = ((row / 128) * atomsAlongK) + (block / 4);
        int r = row % 128;
        return (atom * 512) + (16 * (r % 32)) + (4 * (r / 32)) + (block % 4);
    }

    /// <summary>Swizzles a <c>[rows, blocks]</c> E8M0 plane.</summary>
    public static byte[] Swizzle(ReadOnlySpan<byte> scales, int rows, int blocks)
    {
        if (scales.Length != rows * blocks)
        {
            throw new ArgumentException($"Expected {rows}×{blocks} scale bytes, got {scales.Length}.", nameof(scales));
        }

        var result = new byte[Size(rows, blocks)];
        for (int r = 0; r < rows; r++)
        {
            for (int b = 0; b < blocks; b++)
            {
                result[Offset(r, b, blocks)] = scales[(r * blocks) + b];
            }
        }

        return result;
    }
}
