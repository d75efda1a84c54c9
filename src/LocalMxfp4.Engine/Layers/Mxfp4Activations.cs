using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using LocalMxfp4.Numerics.Mxfp4;

namespace LocalMxfp4.Engine.Layers;

/// <summary>
/// Activation rows quantized to MXFP4 in the layout the dot-product kernels read: per group of
/// <see cref="GroupBlocks"/> blocks, the 16 even-indexed elements of each block (as doubled int8 E2M1 values), then
/// the 16 odd-indexed ones — the same order as the low and high nibbles of the weight bytes, so the kernels need no
/// unpacking on this side. Per block it also keeps the lanes the kernels add: the offset correction
/// <c>−12 · Σa</c> (the weight table is stored +12 so <c>maddubs</c> sees unsigned bytes) and the biased
/// scale exponent <c>ea − 129</c>. Buffers are reused per thread: decode quantizes hundreds of rows per token.
/// </summary>
internal sealed class Mxfp4Activations
{
    /// <summary>int32 lanes per block in the AVX kernels (one 128-bit lane of <c>madd</c> output).</summary>
    public const int LanesPerBlock = 4;

    [ThreadStatic]
    private static Mxfp4Activations? s_cached;

    private int _nonFinite;

    private Mxfp4Activations(int rows, int blocks, int groupBlocks)
    {
        Rows = rows;
        Blocks = blocks;
        GroupBlocks = groupBlocks;
        Codes = new sbyte[rows * blocks * 32];
        Scales = new byte[rows * blocks];
        Corrections = new int[rows * blocks * LanesPerBlock];
        Exponents = new int[rows * blocks * LanesPerBlock];
        Factors = new float[rows * blocks * LanesPerBlock];
        MinScale = new int[rows];
        MaxScale = new int[rows];
    }

    public int Rows { get; private set; }

    /// <summary>Blocks per row, a multiple of <see cref="GroupBlocks"/>.</summary>
    public int Blocks { get; private set; }

    public int GroupBlocks { get; private set; }

    public sbyte[] Codes { get; }

    public byte[] Scales { get; }

    public int[] Corrections { get; }

    public int[] Exponents { get; }

    /// <summary>Per lane the activation block's factor <c>2^(ea − 129)</c> as a float (1 for an all-zero block, whose products are 0 anyway).</summary>
    public float[] Factors { get; }

    /// <summary>Per row the smallest scale byte of its non-zero blocks (255 when there are none).</summary>
    public int[] MinScale { get; private set; }

    /// <summary>Per row the largest scale byte of its non-zero blocks (0 when there are none).</summary>
    public int[] MaxScale { get; private set; }

    /// <summary>True when some block had a NaN or infinity (its scale is 0xFF).</summary>
    public bool HasNonFinite => _nonFinite != 0;

    /// <summary>A buffer for <paramref name="rows"/> × <paramref name="blocks"/>, reusing this thread's last one when it is large enough.</summary>
    public static Mxfp4Activations Rent(int rows, int blocks, int groupBlocks)
    {
        Mxfp4Activations? a = s_cached;
        if (a is null || a.Codes.Length < rows * blocks * 32 || a.MinScale.Length < rows)
        {
            a = new Mxfp4Activations(rows, blocks, groupBlocks);
            s_cached = a;
        }

        a.Rows = rows;
        a.Blocks = blocks;
        a.GroupBlocks = groupBlocks;
        a._nonFinite = 0;
        return a;
    }

    /// <summary>Quantizes every row of <paramref name="input"/> (rows of <paramref name="width"/> floats), spreading blocks over threads.</summary>
    public void QuantizeAll(ReadOnlySpan<float> input, int width, BlockTransform? transform, ScaleRule rule, ParallelRows parallel)
    {
        unsafe
        {
            fixed (float* x = input)
            {
                float* ptr = x;
                int blocks = Blocks, total = Rows * Blocks;
                parallel.For(total, transform is null ? 64 : 1100, (start, end) =>
                {
                    for (int item = start; item < end; item++)
                    {
                        int row = item / blocks, b = item % blocks;
                        QuantizeBlock(row, b, new ReadOnlySpan<float>(ptr + ((long)row * width), width), transform, rule);
                    }
                });
            }
        }

        ComputeScaleRanges();
    }

    /// <summary>Each row's range of non-zero block scales, which tells a kernel whether any block product can leave the normal float range.</summary>
    public void ComputeScaleRanges()
    {
        for (int r = 0; r < Rows; r++)
        {
            int min = 255, max = 0;
            foreach (byte s in Scales.AsSpan(r * Blocks, Blocks))
            {
                if (s != 0)
                {
                    min = Math.Min(min, s);
                    max = Math.Max(max, s);
                }
            }

            MinScale[r] = min;
            MaxScale[r] = max;
        }
    }

    /// <summary>Quantizes row <paramref name="row"/>: zero-pad to whole blocks, transform each block, MXFP4-quantize.</summary>
    public void Quantize(int row, ReadOnlySpan<float> input, BlockTransform? transform, ScaleRule rule)
    {
        for (int b = 0; b < Blocks; b++)
        {
            QuantizeBlock(row, b, input, transform, rule);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void QuantizeBlock(int row, int b, ReadOnlySpan<float> input, BlockTransform? transform, ScaleRule rule)
    {
        Span<float> block = stackalloc float[32];
        Span<float> rotated = stackalloc float[32];
        Span<int> doubled = stackalloc int[32];
        int start = b * 32;
        if (start + 32 <= input.Length)
        {
            input.Slice(start, 32).CopyTo(block);
        }
        else
        {
            block.Clear();
            if (start < input.Length)
            {
                input[start..].CopyTo(block);
            }
        }

        ReadOnlySpan<float> source = block;
        if (transform is not null && b < transform.Blocks)
        {
            transform.Apply(b, block, rotated);
            source = rotated;
        }

        byte scale = EncodeDoubled(source, rule, doubled);
        if (scale == E8M0.NaN)
        {
            _nonFinite = 1;
        }

        int blockIndex = (row * Blocks) + b;
        Scales[blockIndex] = scale;
        int group = b / GroupBlocks, within = b % GroupBlocks;
        int evenOffset = (row * Blocks * 32) + (group * GroupBlocks * 32) + (within * 16);
        int oddOffset = evenOffset + (GroupBlocks * 16);
        int sum = 0;
        for (int i = 0; i < 16; i++)
        {
            int even = doubled[2 * i], odd = doubled[(2 * i) + 1];
            Codes[evenOffset + i] = (sbyte)even;
            Codes[oddOffset + i] = (sbyte)odd;
            sum += even + odd;
        }

        int lane = blockIndex * LanesPerBlock;
        Corrections[lane] = -12 * sum;
        Corrections[lane + 1] = Corrections[lane + 2] = Corrections[lane + 3] = 0;
        Exponents[lane] = Exponents[lane + 1] = Exponents[lane + 2] = Exponents[lane + 3] = scale - 129;
        // 2^(scale − 129) exactly (subnormal for scale 1); an all-zero block's products are zero whatever its factor.
        float factor = scale == 0 ? 1f : scale == 1 ? BitConverter.Int32BitsToSingle(0x0040_0000) : BitConverter.Int32BitsToSingle((scale - 2) << 23);
        Factors[lane] = Factors[lane + 1] = Factors[lane + 2] = Factors[lane + 3] = factor;
    }

    /// <summary>
    /// MXFP4-quantizes 32 values straight to doubled E2M1 integers (±{0,1,2,3,4,6,8,12}); returns the scale byte.
    /// Same thresholds as <see cref="E2M1.Encode"/> (round to nearest even, saturate), checked against the reference codec.
    /// </summary>
    private static byte EncodeDoubled(ReadOnlySpan<float> block, ScaleRule rule, Span<int> doubled)
    {
        uint amaxBits = 0;
        Vector256<uint> absMask = Vector256.Create(0x7FFF_FFFFu);
        Vector256<uint> maxVec = Vector256<uint>.Zero;
        ReadOnlySpan<uint> bits = System.Runtime.InteropServices.MemoryMarshal.Cast<float, uint>(block);
        for (int i = 0; i < 32; i += 8)
        {
            maxVec = Vector256.Max(maxVec, Vector256.Create(bits.Slice(i, 8)) & absMask);
        }

        for (int lane = 0; lane < 8; lane++)
        {
            amaxBits = Math.Max(amaxBits, maxVec[lane]);
        }

        if (amaxBits >= 0x7F80_0000u)
        {
            doubled.Clear();
            return E8M0.NaN;
        }

        byte scale = E8M0.FromAmax(BitConverter.UInt32BitsToSingle(amaxBits), rule);
        Vector256<float> inv = Vector256.Create(E8M0.InverseScale(scale));
        for (int i = 0; i < 32; i += 8)
        {
            Vector256<float> x = Vector256.Create(block.Slice(i, 8)) * inv;
            Vector256<float> m = Vector256.Abs(x);
            // Strict '>' where the tie goes down to the even code, '>=' where it goes up to it.
            Vector256<int> code = -(
                Vector256.GreaterThan(m, Vector256.Create(0.25f)).AsInt32() + Vector256.GreaterThanOrEqual(m, Vector256.Create(0.75f)).AsInt32() +
                Vector256.GreaterThan(m, Vector256.Create(1.25f)).AsInt32() + Vector256.GreaterThanOrEqual(m, Vector256.Create(1.75f)).AsInt32() +
                Vector256.GreaterThan(m, Vector256.Create(2.5f)).AsInt32() + Vector256.GreaterThanOrEqual(m, Vector256.Create(3.5f)).AsInt32() +
                Vector256.GreaterThan(m, Vector256.Create(5f)).AsInt32());
            // Code c ↦ 2·value: c for c ≤ 4, then 6, 8, 12.
            Vector256<int> d = code + Vector256.Max(code - Vector256.Create(4), Vector256<int>.Zero)
                + (Vector256.Max(code - Vector256.Create(6), Vector256<int>.Zero) << 1);
            Vector256<int> negative = Vector256.LessThan(x.AsInt32(), Vector256<int>.Zero);
            Vector256.ConditionalSelect(negative, -d, d).CopyTo(doubled.Slice(i, 8));
        }

        return scale;
    }
}
