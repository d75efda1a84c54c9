using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace LocalMxfp4.Engine.Layers;

/// <summary>
/// The W4A4 matrix product of a range of weight rows with every token of a step, register-tiled: each weight group (4
/// blocks for AVX-512, 2 for AVX2) is loaded and its nibbles decoded once for up to 4 tokens (2 rows × 4 tokens), or
/// shared by 4 rows when a step has one token; rows are walked in blocks that stay in cache while every token tile
/// passes over them. Each (row, token) result is accumulated exactly as <see cref="Mxfp4DotKernels.Dot"/> does it —
/// the same lanes, the same fused multiply-adds in the same order, the same final sum — so a token's output does not
/// depend on how many tokens share the step or which tile it lands in.
/// </summary>
/// <remarks>
/// Constants are built in each method (not read from static fields) so the JIT keeps them in registers: a
/// <c>static readonly</c> vector in a method compiled before its class is initialised is reloaded every iteration.
/// </remarks>
internal static unsafe class Mxfp4Gemm
{
    /// <summary>Rows per cache block: their weights stay in L1/L2 while all token tiles pass.</summary>
    private const int RowBlock = 16;

    /// <summary>Whether <paramref name="kind"/> has a tiled kernel here.</summary>
    public static bool Supports(Mxfp4KernelKind kind) => kind is Mxfp4KernelKind.Avx512 or Mxfp4KernelKind.Avx2;

    /// <summary>
    /// <c>y[t, r] = Σ_b …</c> for rows <c>[rowStart, rowEnd)</c> and tokens <c>[0, tokens)</c>: weights <c>packed</c>/<c>scales</c>
    /// (<paramref name="blocks"/> padded blocks per row), activations in <see cref="Mxfp4Activations"/>' layout, output
    /// rows <paramref name="ldy"/> floats apart.
    /// </summary>
    /// <remarks><paramref name="normal"/> holds per token whether every block factor with these weights is a normal float (see <see cref="Mxfp4Linear.FactorsAreNormal"/>); <paramref name="factors"/> are the activation factor lanes.</remarks>
    public static void Run(Mxfp4KernelKind kind, byte* packed, byte* scales, int blocks, int rowStart, int rowEnd, sbyte* codes, int* corrections, int* exponents, float* factors, bool* normal, int tokens, float* y, int ldy)
    {
        var k = new Operands(packed, scales, blocks, codes, corrections, exponents, factors, normal, y, ldy);
        for (int rb = rowStart; rb < rowEnd; rb += RowBlock)
        {
            int re = Math.Min(rb + RowBlock, rowEnd);
            for (int t0 = 0; t0 < tokens; t0 += 4)
            {
                int nt = Math.Min(4, tokens - t0);
                if (kind == Mxfp4KernelKind.Avx512)
                {
                    Tile512(k, rb, re, t0, nt);
                }
                else
                {
                    Tile256(k, rb, re, t0, nt);
                }
            }
        }
    }

    private readonly struct Operands(byte* packed, byte* scales, int blocks, sbyte* codes, int* corrections, int* exponents, float* factors, bool* normal, float* y, int ldy)
    {
        public float* Factors(int token) => factors + ((long)token * Blocks * 4);

        /// <summary>Whether tokens <c>[t, t + n)</c> all have normal factors.</summary>
        public bool Normal(int t, int n)
        {
            for (int i = t; i < t + n; i++)
            {
                if (!normal[i])
                {
                    return false;
                }
            }

            return true;
        }

        public readonly int Blocks = blocks;
        public readonly float* Y = y;
        public readonly int Ldy = ldy;

        public byte* Packed(int row) => packed + ((long)row * Blocks * 16);

        public byte* Scales(int row) => scales + ((long)row * Blocks);

        public sbyte* Codes(int token) => codes + ((long)token * Blocks * 32);

        public int* Corrections(int token) => corrections + ((long)token * Blocks * 4);

        public int* Exponents(int token) => exponents + ((long)token * Blocks * 4);

        public float* Out(int token, int row) => Y + ((long)token * Ldy) + row;
    }

    private static void Tile512(in Operands k, int r0, int r1, int t0, int nt)
    {
        int r = r0;
        bool normal = k.Normal(t0, nt);
        if (nt == 1)
        {
            for (; r + 4 <= r1; r += 4)
            {
                if (normal)
                {
                    Rows4Token1Normal512(k, r, t0);
                }
                else
                {
                    Rows4Token1Avx512(k, r, t0);
                }
            }
        }
        else
        {
            for (; r + 2 <= r1; r += 2)
            {
                if (normal && nt != 2)
                {
                    Rows2Tokens4Normal512(k, r, t0, nt == 4 ? t0 + 3 : t0 + 2);
                }
                else if (nt == 2)
                {
                    Rows2Tokens2Avx512(k, r, t0);
                }
                else
                {
                    // Three tokens run as four with the last repeated (its result is discarded).
                    Rows2Tokens4Avx512(k, r, t0, nt == 4 ? t0 + 3 : t0 + 2);
                }
            }
        }

        for (; r < r1; r++)
        {
            for (int t = t0; t < t0 + nt; t++)
            {
                *k.Out(t, r) = Mxfp4DotKernels.Dot(Mxfp4KernelKind.Avx512, k.Packed(r), k.Scales(r), k.Codes(t), k.Corrections(t), k.Exponents(t), k.Blocks);
            }
        }
    }

    private static void Tile256(in Operands k, int r0, int r1, int t0, int nt)
    {
        int r = r0;
        if (nt >= 2)
        {
            for (; r + 2 <= r1; r += 2)
            {
                for (int t = t0; t + 2 <= t0 + nt; t += 2)
                {
                    Rows2Tokens2Avx2(k, r, t);
                }

                if ((nt & 1) != 0)
                {
                    int t = t0 + nt - 1;
                    Mxfp4DotKernels.Dot2(Mxfp4KernelKind.Avx2, k.Packed(r), k.Packed(r + 1), k.Scales(r), k.Scales(r + 1), k.Codes(t), k.Corrections(t), k.Exponents(t), k.Blocks, out *k.Out(t, r), out *k.Out(t, r + 1));
                }
            }
        }
        else
        {
            for (; r + 2 <= r1; r += 2)
            {
                Mxfp4DotKernels.Dot2(Mxfp4KernelKind.Avx2, k.Packed(r), k.Packed(r + 1), k.Scales(r), k.Scales(r + 1), k.Codes(t0), k.Corrections(t0), k.Exponents(t0), k.Blocks, out *k.Out(t0, r), out *k.Out(t0, r + 1));
            }
        }

        for (; r < r1; r++)
        {
            for (int t = t0; t < t0 + nt; t++)
            {
                *k.Out(t, r) = Mxfp4DotKernels.Dot(Mxfp4KernelKind.Avx2, k.Packed(r), k.Scales(r), k.Codes(t), k.Corrections(t), k.Exponents(t), k.Blocks);
            }
        }
    }

    /// <summary>Rows up to this many blocks (2 KiB of nibbles) are "short": the next tile fits L1 beside the current one.</summary>
    private const int ShortRowBlocks = 128;

    /// <summary>
    /// Prefetches one step's worth of weights (4 rows × 64 bytes): the next tile's bytes in address order (one
    /// sequential stream measured about twice as fast as four interleaved ones), into L1 for short rows and into L2 for
    /// long ones, whose next tile (4 × ≥ 4 KiB) would otherwise push the activations out of L1.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Prefetch4(bool shortRows, byte* next)
    {
        if (shortRows)
        {
            Sse.Prefetch0(next);
            Sse.Prefetch0(next + 64);
            Sse.Prefetch0(next + 128);
            Sse.Prefetch0(next + 192);
        }
        else
        {
            Sse.Prefetch1(next);
            Sse.Prefetch1(next + 64);
            Sse.Prefetch1(next + 128);
            Sse.Prefetch1(next + 192);
        }
    }

    /// <summary>The two-row form of <see cref="Prefetch4"/> (2 rows × 64 bytes per step).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Prefetch2(bool shortRows, byte* next)
    {
        if (shortRows)
        {
            Sse.Prefetch0(next);
            Sse.Prefetch0(next + 64);
        }
        else
        {
            Sse.Prefetch1(next);
            Sse.Prefetch1(next + 64);
        }
    }

    // ---- AVX-512: 4 blocks (64 weight bytes per row) per step ----

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Table512()
    {
        Vector128<byte> t = Vector128.Create((byte)12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0);
        Vector256<byte> h = Vector256.Create(t, t);
        return Vector512.Create(h, h);
    }

    /// <summary>
    /// The offset E2M1 values (2·e + 12) of the low nibbles: one 64-entry byte permute of the 16-entry table repeated
    /// four times needs no mask (VBMI); else mask and shuffle.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Low512(Vector512<byte> table, Vector512<byte> mask, Vector512<byte> v) =>
        Avx512Vbmi.IsSupported ? Avx512Vbmi.PermuteVar64x8(table, v) : Avx512BW.Shuffle(table, v & mask);

    /// <summary>The high nibbles' values: a GF(2) affine transform shifts every byte right by 4 in one instruction (GFNI).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> High512(Vector512<byte> table, Vector512<byte> mask, Vector512<byte> v) =>
        Gfni.V512.IsSupported
            ? Avx512BW.Shuffle(table, Gfni.V512.GaloisFieldAffineTransform(v, Vector512.Create(0x1020408000000000UL).AsByte(), 0))
            : Avx512BW.Shuffle(table, Avx512BW.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & mask);

    /// <summary>The weight-scale bytes of 4 blocks spread to their 4 lanes each, as int32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Spread512(byte* scales, Vector128<byte> spread) =>
        Avx512F.ConvertToVector512Int32(Ssse3.Shuffle(Vector128.CreateScalarUnsafe(*(uint*)scales).AsByte(), spread));

    /// <summary>One row's decoded group × one token's group: the 16 lanes of exact int32 partial sums (4 per block).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Lanes512(Vector512<byte> wl, Vector512<byte> wh, Vector512<sbyte> ae, Vector512<sbyte> ao, Vector512<int> corr, Vector512<short> ones) =>
        Avx512F.Add(Avx512BW.MultiplyAddAdjacent(Avx512BW.Add(Avx512BW.MultiplyAddAdjacent(wl, ae), Avx512BW.MultiplyAddAdjacent(wh, ao)), ones), corr);

    /// <summary><c>2^(ea+ew−256)</c> per lane from the spread weight scales and the token's <c>ea − 129</c> lanes, clamped like the scalar reference.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Factor512(Vector512<int> ew, Vector512<int> exp, Vector512<int> max) =>
        Avx512F.ShiftLeftLogical(Avx512F.Min(Avx512F.Max(Avx512F.Add(ew, exp), Vector512<int>.Zero), max), 23).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Rows4Token1Avx512(in Operands k, int r, int t)
    {
        Vector512<byte> table = Table512(), mask = Vector512.Create((byte)0x0F);
        Vector512<short> ones = Vector512.Create((short)1);
        Vector512<int> max = Vector512.Create(254);
        Vector128<byte> spread = Vector128.Create((byte)0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
        byte* p0 = k.Packed(r), p1 = k.Packed(r + 1), p2 = k.Packed(r + 2), p3 = k.Packed(r + 3);
        byte* s0 = k.Scales(r), s1 = k.Scales(r + 1), s2 = k.Scales(r + 2), s3 = k.Scales(r + 3);
        sbyte* a = k.Codes(t);
        int* c = k.Corrections(t), e = k.Exponents(t);
        Vector512<float> acc0 = Vector512<float>.Zero, acc1 = acc0, acc2 = acc0, acc3 = acc0;
        int blocks = k.Blocks;
        // The weights stream from memory once, so they are fetched ahead (see Prefetch4).
        bool shortRows = blocks <= ShortRowBlocks;
        byte* next = p0 + (4L * blocks * 16);
        for (int q = 0; q < blocks; q += 4)
        {
            Prefetch4(shortRows, next + (q * 64));
            Vector512<sbyte> ae = Vector512.Load(a + (q * 32)), ao = Vector512.Load(a + (q * 32) + 64);
            Vector512<int> corr = Vector512.Load(c + (q * 4)), exp = Vector512.Load(e + (q * 4));
            Vector512<byte> v0 = Vector512.Load(p0 + (q * 16)), v1 = Vector512.Load(p1 + (q * 16));
            Vector512<byte> v2 = Vector512.Load(p2 + (q * 16)), v3 = Vector512.Load(p3 + (q * 16));
            acc0 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Lanes512(Low512(table, mask, v0), High512(table, mask, v0), ae, ao, corr, ones)), Factor512(Spread512(s0 + q, spread), exp, max), acc0);
            acc1 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Lanes512(Low512(table, mask, v1), High512(table, mask, v1), ae, ao, corr, ones)), Factor512(Spread512(s1 + q, spread), exp, max), acc1);
            acc2 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Lanes512(Low512(table, mask, v2), High512(table, mask, v2), ae, ao, corr, ones)), Factor512(Spread512(s2 + q, spread), exp, max), acc2);
            acc3 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Lanes512(Low512(table, mask, v3), High512(table, mask, v3), ae, ao, corr, ones)), Factor512(Spread512(s3 + q, spread), exp, max), acc3);
        }

        HorizontalSum.Sum4(acc0, acc1, acc2, acc3).Store(k.Out(t, r));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Rows2Tokens2Avx512(in Operands k, int r, int t)
    {
        Vector512<byte> table = Table512(), mask = Vector512.Create((byte)0x0F);
        Vector512<short> ones = Vector512.Create((short)1);
        Vector512<int> max = Vector512.Create(254);
        Vector128<byte> spread = Vector128.Create((byte)0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
        byte* p0 = k.Packed(r), p1 = k.Packed(r + 1), s0 = k.Scales(r), s1 = k.Scales(r + 1);
        sbyte* a0 = k.Codes(t), a1 = k.Codes(t + 1);
        int* c0 = k.Corrections(t), c1 = k.Corrections(t + 1), e0 = k.Exponents(t), e1 = k.Exponents(t + 1);
        Vector512<float> acc00 = Vector512<float>.Zero, acc01 = acc00, acc10 = acc00, acc11 = acc00;
        int blocks = k.Blocks;
        bool shortRows = blocks <= ShortRowBlocks;
        byte* next = p0 + (2L * blocks * 16);
        for (int q = 0; q < blocks; q += 4)
        {
            Prefetch2(shortRows, next + (q * 32));
            Vector512<byte> v0 = Vector512.Load(p0 + (q * 16)), v1 = Vector512.Load(p1 + (q * 16));
            Vector512<byte> l0 = Low512(table, mask, v0), h0 = High512(table, mask, v0);
            Vector512<byte> l1 = Low512(table, mask, v1), h1 = High512(table, mask, v1);
            Vector512<int> w0 = Spread512(s0 + q, spread), w1 = Spread512(s1 + q, spread);

            Vector512<sbyte> ae = Vector512.Load(a0 + (q * 32)), ao = Vector512.Load(a0 + (q * 32) + 64);
            Vector512<int> corr = Vector512.Load(c0 + (q * 4)), exp = Vector512.Load(e0 + (q * 4));
            acc00 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Lanes512(l0, h0, ae, ao, corr, ones)), Factor512(w0, exp, max), acc00);
            acc10 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Lanes512(l1, h1, ae, ao, corr, ones)), Factor512(w1, exp, max), acc10);

            ae = Vector512.Load(a1 + (q * 32));
            ao = Vector512.Load(a1 + (q * 32) + 64);
            corr = Vector512.Load(c1 + (q * 4));
            exp = Vector512.Load(e1 + (q * 4));
            acc01 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Lanes512(l0, h0, ae, ao, corr, ones)), Factor512(w0, exp, max), acc01);
            acc11 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Lanes512(l1, h1, ae, ao, corr, ones)), Factor512(w1, exp, max), acc11);
        }

        Vector128<float> sums = HorizontalSum.Sum4(acc00, acc10, acc01, acc11);
        *k.Out(t, r) = sums[0];
        *k.Out(t, r + 1) = sums[1];
        *k.Out(t + 1, r) = sums[2];
        *k.Out(t + 1, r + 1) = sums[3];
    }

    /// <summary>Two rows × tokens t, t+1, t+2 and <paramref name="t3"/> (= t+3, or t+2 again for a tile of three).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Rows2Tokens4Avx512(in Operands k, int r, int t, int t3)
    {
        Vector512<byte> table = Table512(), mask = Vector512.Create((byte)0x0F);
        Vector512<short> ones = Vector512.Create((short)1);
        Vector512<int> max = Vector512.Create(254);
        Vector128<byte> spread = Vector128.Create((byte)0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
        byte* p0 = k.Packed(r), p1 = k.Packed(r + 1), s0 = k.Scales(r), s1 = k.Scales(r + 1);
        sbyte* a0 = k.Codes(t), a1 = k.Codes(t + 1), a2 = k.Codes(t + 2), a3 = k.Codes(t3);
        int* c0 = k.Corrections(t), c1 = k.Corrections(t + 1), c2 = k.Corrections(t + 2), c3 = k.Corrections(t3);
        int* e0 = k.Exponents(t), e1 = k.Exponents(t + 1), e2 = k.Exponents(t + 2), e3 = k.Exponents(t3);
        Vector512<float> acc00 = Vector512<float>.Zero, acc01 = acc00, acc02 = acc00, acc03 = acc00;
        Vector512<float> acc10 = acc00, acc11 = acc00, acc12 = acc00, acc13 = acc00;
        int blocks = k.Blocks;
        bool shortRows = blocks <= ShortRowBlocks;
        byte* next = p0 + (2L * blocks * 16);
        for (int q = 0; q < blocks; q += 4)
        {
            Prefetch2(shortRows, next + (q * 32));
            Vector512<byte> v0 = Vector512.Load(p0 + (q * 16)), v1 = Vector512.Load(p1 + (q * 16));
            Vector512<byte> l0 = Low512(table, mask, v0), h0 = High512(table, mask, v0);
            Vector512<byte> l1 = Low512(table, mask, v1), h1 = High512(table, mask, v1);
            Vector512<int> w0 = Spread512(s0 + q, spread), w1 = Spread512(s1 + q, spread);
            int ao = q * 32, lo = q * 4;

            Vector512<sbyte> xe = Vector512.Load(a0 + ao), xo = Vector512.Load(a0 + ao + 64);
            Vector512<int> corr = Vector512.Load(c0 + lo), exp = Vector512.Load(e0 + lo);
            acc00 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Lanes512(l0, h0, xe, xo, corr, ones)), Factor512(w0, exp, max), acc00);
            acc10 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Lanes512(l1, h1, xe, xo, corr, ones)), Factor512(w1, exp, max), acc10);

            xe = Vector512.Load(a1 + ao);
            xo = Vector512.Load(a1 + ao + 64);
            corr = Vector512.Load(c1 + lo);
            exp = Vector512.Load(e1 + lo);
            acc01 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Lanes512(l0, h0, xe, xo, corr, ones)), Factor512(w0, exp, max), acc01);
            acc11 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Lanes512(l1, h1, xe, xo, corr, ones)), Factor512(w1, exp, max), acc11);

            xe = Vector512.Load(a2 + ao);
            xo = Vector512.Load(a2 + ao + 64);
            corr = Vector512.Load(c2 + lo);
            exp = Vector512.Load(e2 + lo);
            acc02 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Lanes512(l0, h0, xe, xo, corr, ones)), Factor512(w0, exp, max), acc02);
            acc12 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Lanes512(l1, h1, xe, xo, corr, ones)), Factor512(w1, exp, max), acc12);

            xe = Vector512.Load(a3 + ao);
            xo = Vector512.Load(a3 + ao + 64);
            corr = Vector512.Load(c3 + lo);
            exp = Vector512.Load(e3 + lo);
            acc03 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Lanes512(l0, h0, xe, xo, corr, ones)), Factor512(w0, exp, max), acc03);
            acc13 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Lanes512(l1, h1, xe, xo, corr, ones)), Factor512(w1, exp, max), acc13);
        }

        Vector128<float> row0 = HorizontalSum.Sum4(acc00, acc01, acc02, acc03), row1 = HorizontalSum.Sum4(acc10, acc11, acc12, acc13);
        int tiles = t3 != t + 2 ? 4 : 3;
        for (int j = 0; j < tiles; j++)
        {
            *k.Out(t + j, r) = row0[j];
            *k.Out(t + j, r + 1) = row1[j];
        }
    }

    // ---- AVX-512 with normal factors: 2^(ew−127) · 2^(ea−129) as one float multiply (same bits as the clamped sum) ----

    /// <summary>The weight factors <c>2^(ew − 127)</c> of 4 blocks, 4 lanes each (ew ≥ 1 here).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> WeightFactors512(byte* scales, Vector128<byte> spread) =>
        Avx512F.ShiftLeftLogical(Spread512(scales, spread), 23).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Rows4Token1Normal512(in Operands k, int r, int t)
    {
        Vector512<byte> table = Table512(), mask = Vector512.Create((byte)0x0F);
        Vector512<short> ones = Vector512.Create((short)1);
        Vector128<byte> spread = Vector128.Create((byte)0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
        byte* p0 = k.Packed(r), p1 = k.Packed(r + 1), p2 = k.Packed(r + 2), p3 = k.Packed(r + 3);
        byte* s0 = k.Scales(r), s1 = k.Scales(r + 1), s2 = k.Scales(r + 2), s3 = k.Scales(r + 3);
        sbyte* a = k.Codes(t);
        int* c = k.Corrections(t);
        float* f = k.Factors(t);
        Vector512<float> acc0 = Vector512<float>.Zero, acc1 = acc0, acc2 = acc0, acc3 = acc0;
        int blocks = k.Blocks;
        // The weights stream from memory once, so they are fetched ahead (see Prefetch4).
        bool shortRows = blocks <= ShortRowBlocks;
        byte* next = p0 + (4L * blocks * 16);
        for (int q = 0; q < blocks; q += 4)
        {
            Prefetch4(shortRows, next + (q * 64));
            Vector512<sbyte> ae = Vector512.Load(a + (q * 32)), ao = Vector512.Load(a + (q * 32) + 64);
            Vector512<int> corr = Vector512.Load(c + (q * 4));
            Vector512<float> fa = Vector512.Load(f + (q * 4));
            Vector512<byte> v0 = Vector512.Load(p0 + (q * 16)), v1 = Vector512.Load(p1 + (q * 16));
            Vector512<byte> v2 = Vector512.Load(p2 + (q * 16)), v3 = Vector512.Load(p3 + (q * 16));
            acc0 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Lanes512(Low512(table, mask, v0), High512(table, mask, v0), ae, ao, corr, ones)), WeightFactors512(s0 + q, spread) * fa, acc0);
            acc1 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Lanes512(Low512(table, mask, v1), High512(table, mask, v1), ae, ao, corr, ones)), WeightFactors512(s1 + q, spread) * fa, acc1);
            acc2 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Lanes512(Low512(table, mask, v2), High512(table, mask, v2), ae, ao, corr, ones)), WeightFactors512(s2 + q, spread) * fa, acc2);
            acc3 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Lanes512(Low512(table, mask, v3), High512(table, mask, v3), ae, ao, corr, ones)), WeightFactors512(s3 + q, spread) * fa, acc3);
        }

        HorizontalSum.Sum4(acc0, acc1, acc2, acc3).Store(k.Out(t, r));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Rows2Tokens4Normal512(in Operands k, int r, int t, int t3)
    {
        Vector512<byte> table = Table512(), mask = Vector512.Create((byte)0x0F);
        Vector512<short> ones = Vector512.Create((short)1);
        Vector128<byte> spread = Vector128.Create((byte)0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
        byte* p0 = k.Packed(r), p1 = k.Packed(r + 1), s0 = k.Scales(r), s1 = k.Scales(r + 1);
        sbyte* a0 = k.Codes(t), a1 = k.Codes(t + 1), a2 = k.Codes(t + 2), a3 = k.Codes(t3);
        int* c0 = k.Corrections(t), c1 = k.Corrections(t + 1), c2 = k.Corrections(t + 2), c3 = k.Corrections(t3);
        float* f0 = k.Factors(t), f1 = k.Factors(t + 1), f2 = k.Factors(t + 2), f3 = k.Factors(t3);
        Vector512<float> acc00 = Vector512<float>.Zero, acc01 = acc00, acc02 = acc00, acc03 = acc00;
        Vector512<float> acc10 = acc00, acc11 = acc00, acc12 = acc00, acc13 = acc00;
        int blocks = k.Blocks;
        bool shortRows = blocks <= ShortRowBlocks;
        byte* next = p0 + (2L * blocks * 16);
        for (int q = 0; q < blocks; q += 4)
        {
            Prefetch2(shortRows, next + (q * 32));
            Vector512<byte> v0 = Vector512.Load(p0 + (q * 16)), v1 = Vector512.Load(p1 + (q * 16));
            Vector512<byte> l0 = Low512(table, mask, v0), h0 = High512(table, mask, v0);
            Vector512<byte> l1 = Low512(table, mask, v1), h1 = High512(table, mask, v1);
            Vector512<float> w0 = WeightFactors512(s0 + q, spread), w1 = WeightFactors512(s1 + q, spread);
            int ao = q * 32, lo = q * 4;

            Vector512<sbyte> xe = Vector512.Load(a0 + ao), xo = Vector512.Load(a0 + ao + 64);
            Vector512<int> corr = Vector512.Load(c0 + lo);
            Vector512<float> fa = Vector512.Load(f0 + lo);
            acc00 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Lanes512(l0, h0, xe, xo, corr, ones)), w0 * fa, acc00);
            acc10 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Lanes512(l1, h1, xe, xo, corr, ones)), w1 * fa, acc10);

            xe = Vector512.Load(a1 + ao);
            xo = Vector512.Load(a1 + ao + 64);
            corr = Vector512.Load(c1 + lo);
            fa = Vector512.Load(f1 + lo);
            acc01 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Lanes512(l0, h0, xe, xo, corr, ones)), w0 * fa, acc01);
            acc11 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Lanes512(l1, h1, xe, xo, corr, ones)), w1 * fa, acc11);

            xe = Vector512.Load(a2 + ao);
            xo = Vector512.Load(a2 + ao + 64);
            corr = Vector512.Load(c2 + lo);
            fa = Vector512.Load(f2 + lo);
            acc02 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Lanes512(l0, h0, xe, xo, corr, ones)), w0 * fa, acc02);
            acc12 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Lanes512(l1, h1, xe, xo, corr, ones)), w1 * fa, acc12);

            xe = Vector512.Load(a3 + ao);
            xo = Vector512.Load(a3 + ao + 64);
            corr = Vector512.Load(c3 + lo);
            fa = Vector512.Load(f3 + lo);
            acc03 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Lanes512(l0, h0, xe, xo, corr, ones)), w0 * fa, acc03);
            acc13 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Lanes512(l1, h1, xe, xo, corr, ones)), w1 * fa, acc13);
        }

        Vector128<float> row0 = HorizontalSum.Sum4(acc00, acc01, acc02, acc03), row1 = HorizontalSum.Sum4(acc10, acc11, acc12, acc13);
        int tiles = t3 != t + 2 ? 4 : 3;
        for (int j = 0; j < tiles; j++)
        {
            *k.Out(t + j, r) = row0[j];
            *k.Out(t + j, r + 1) = row1[j];
        }
    }

    // ---- AVX2: 2 blocks (32 weight bytes per row) per step ----

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Rows2Tokens2Avx2(in Operands k, int r, int t)
    {
        Vector128<byte> t128 = Vector128.Create((byte)12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0);
        Vector256<byte> table = Vector256.Create(t128, t128), mask = Vector256.Create((byte)0x0F);
        Vector256<short> ones = Vector256.Create((short)1);
        Vector256<int> max = Vector256.Create(254);
        Vector128<byte> spread = Vector128.Create((byte)0, 0, 0, 0, 1, 1, 1, 1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80);
        byte* p0 = k.Packed(r), p1 = k.Packed(r + 1), s0 = k.Scales(r), s1 = k.Scales(r + 1);
        sbyte* a0 = k.Codes(t), a1 = k.Codes(t + 1);
        int* c0 = k.Corrections(t), c1 = k.Corrections(t + 1), e0 = k.Exponents(t), e1 = k.Exponents(t + 1);
        Vector256<float> acc00 = Vector256<float>.Zero, acc01 = acc00, acc10 = acc00, acc11 = acc00;
        int blocks = k.Blocks;
        bool shortRows = blocks <= ShortRowBlocks;
        byte* next = p0 + (2L * blocks * 16);
        for (int p = 0; p < blocks; p += 2)
        {
            if ((p & 2) == 0)
            {
                Prefetch2(shortRows, next + (p * 32));
            }

            Vector256<byte> v0 = Avx.LoadVector256(p0 + (p * 16)), v1 = Avx.LoadVector256(p1 + (p * 16));
            Vector256<byte> l0 = Avx2.Shuffle(table, v0 & mask), h0 = Avx2.Shuffle(table, Avx2.ShiftRightLogical(v0.AsUInt16(), 4).AsByte() & mask);
            Vector256<byte> l1 = Avx2.Shuffle(table, v1 & mask), h1 = Avx2.Shuffle(table, Avx2.ShiftRightLogical(v1.AsUInt16(), 4).AsByte() & mask);
            Vector256<int> w0 = Avx2.ConvertToVector256Int32(Ssse3.Shuffle(Vector128.CreateScalarUnsafe(*(ushort*)(s0 + p)).AsByte(), spread));
            Vector256<int> w1 = Avx2.ConvertToVector256Int32(Ssse3.Shuffle(Vector128.CreateScalarUnsafe(*(ushort*)(s1 + p)).AsByte(), spread));

            Vector256<sbyte> xe = Avx.LoadVector256(a0 + (p * 32)), xo = Avx.LoadVector256(a0 + (p * 32) + 32);
            Vector256<int> corr = Avx.LoadVector256(c0 + (p * 4)), exp = Avx.LoadVector256(e0 + (p * 4));
            acc00 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Lanes256(l0, h0, xe, xo, corr, ones)), Factor256(w0, exp, max), acc00);
            acc10 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Lanes256(l1, h1, xe, xo, corr, ones)), Factor256(w1, exp, max), acc10);

            xe = Avx.LoadVector256(a1 + (p * 32));
            xo = Avx.LoadVector256(a1 + (p * 32) + 32);
            corr = Avx.LoadVector256(c1 + (p * 4));
            exp = Avx.LoadVector256(e1 + (p * 4));
            acc01 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Lanes256(l0, h0, xe, xo, corr, ones)), Factor256(w0, exp, max), acc01);
            acc11 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Lanes256(l1, h1, xe, xo, corr, ones)), Factor256(w1, exp, max), acc11);
        }

        *k.Out(t, r) = Vector256.Sum(acc00);
        *k.Out(t, r + 1) = Vector256.Sum(acc10);
        *k.Out(t + 1, r) = Vector256.Sum(acc01);
        *k.Out(t + 1, r + 1) = Vector256.Sum(acc11);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Lanes256(Vector256<byte> wl, Vector256<byte> wh, Vector256<sbyte> ae, Vector256<sbyte> ao, Vector256<int> corr, Vector256<short> ones) =>
        Avx2.Add(Avx2.MultiplyAddAdjacent(Avx2.Add(Avx2.MultiplyAddAdjacent(wl, ae), Avx2.MultiplyAddAdjacent(wh, ao)), ones), corr);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Factor256(Vector256<int> ew, Vector256<int> exp, Vector256<int> max) =>
        Avx2.ShiftLeftLogical(Avx2.Min(Avx2.Max(Avx2.Add(ew, exp), Vector256<int>.Zero), max), 23).AsSingle();
}
