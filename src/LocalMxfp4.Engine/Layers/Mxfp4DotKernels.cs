using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using LocalMxfp4.Numerics.Mxfp4;

namespace LocalMxfp4.Engine.Layers;

/// <summary>The instruction set a W4A4 dot-product kernel uses.</summary>
public enum Mxfp4KernelKind
{
    /// <summary>Plain C#: the reference every other kernel must match block sum for block sum.</summary>
    Scalar,

    /// <summary>Portable 128-bit vectors (one block per step), for CPUs without AVX2.</summary>
    Vector128,

    /// <summary>AVX2: two blocks per step with <c>vpshufb</c> table lookups and <c>vpmaddubsw</c>/<c>vpmaddwd</c>.</summary>
    Avx2,

    /// <summary>AVX-512BW: four blocks per step, the same scheme at 512 bits.</summary>
    Avx512,
}

/// <summary>
/// Exact W4A4 block dot products: for an activation block (scale byte ea) and a weight block (ew), the product is
/// <c>2^(ea+ew−256) · Σ int8a·int8w</c> with E2M1 values doubled into small integers, so every block sum is an exact
/// int32 and all kernels agree on it. Block results are accumulated in float32. The factor is built directly as float
/// bits <c>(ea+ew−129) &lt;&lt; 23</c>, clamped to [0, 254]: products below 2^−126 flush to zero (a block of values
/// that small contributes nothing visible), and weights never carry the NaN byte (the loader rejects it).
/// </summary>
internal static unsafe class Mxfp4DotKernels
{
    /// <summary>Weight table shifted by +12 so values are unsigned bytes for <c>maddubs</c>; the activation side subtracts 12·Σa.</summary>
    private static readonly Vector128<byte> OffsetTable = Vector128.Create((byte)12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0);

    private static readonly Vector128<sbyte> SignedTable = Vector128.Create((sbyte)0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12);

    /// <summary>The best kernel this CPU runs.</summary>
    public static Mxfp4KernelKind Best =>
        Avx512BW.IsSupported && Avx512F.IsSupported ? Mxfp4KernelKind.Avx512
        : Avx2.IsSupported && Fma.IsSupported ? Mxfp4KernelKind.Avx2
        : Vector128.IsHardwareAccelerated ? Mxfp4KernelKind.Vector128
        : Mxfp4KernelKind.Scalar;

    /// <summary>True when <paramref name="kind"/> can run on this CPU.</summary>
    public static bool IsSupported(Mxfp4KernelKind kind) => kind switch
    {
        Mxfp4KernelKind.Scalar => true,
        Mxfp4KernelKind.Vector128 => Vector128.IsHardwareAccelerated,
        Mxfp4KernelKind.Avx2 => Avx2.IsSupported && Fma.IsSupported,
        Mxfp4KernelKind.Avx512 => Avx512BW.IsSupported && Avx512F.IsSupported,
        _ => false,
    };

    /// <summary>Blocks a kernel consumes per step; activations are laid out in groups of this many.</summary>
    public static int GroupBlocks(Mxfp4KernelKind kind) => kind switch
    {
        Mxfp4KernelKind.Avx512 => 4,
        Mxfp4KernelKind.Avx2 => 2,
        _ => 1,
    };

    /// <summary>The float factor of a block product: <c>2^(ea+ew−256)</c>, from <c>ea − 129</c> and ew.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Factor(int activationExponent, byte weightScale) =>
        BitConverter.Int32BitsToSingle(Math.Clamp(activationExponent + weightScale, 0, 254) << 23);

    /// <summary>The dot product of one weight row with one activation row, both <paramref name="blocks"/> blocks long.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Dot(Mxfp4KernelKind kind, byte* packed, byte* scales, sbyte* act, int* corrections, int* exponents, int blocks) => kind switch
    {
        Mxfp4KernelKind.Avx512 => DotAvx512(packed, scales, act, corrections, exponents, blocks),
        Mxfp4KernelKind.Avx2 => DotAvx2(packed, scales, act, corrections, exponents, blocks),
        Mxfp4KernelKind.Vector128 => DotVector128(packed, scales, act, exponents, blocks),
        _ => DotScalar(packed, scales, act, exponents, blocks),
    };

    /// <summary>
    /// Two weight rows against one activation row: the activation group is loaded once for both rows, halving the
    /// activation-side traffic that otherwise matches the weight stream byte for byte on long rows.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Dot2(Mxfp4KernelKind kind, byte* packed0, byte* packed1, byte* scales0, byte* scales1, sbyte* act, int* corrections, int* exponents, int blocks, out float result0, out float result1)
    {
        switch (kind)
        {
            case Mxfp4KernelKind.Avx512:
                DotAvx512x2(packed0, packed1, scales0, scales1, act, corrections, exponents, blocks, out result0, out result1);
                return;
            case Mxfp4KernelKind.Avx2:
                DotAvx2x2(packed0, packed1, scales0, scales1, act, corrections, exponents, blocks, out result0, out result1);
                return;
            default:
                result0 = Dot(kind, packed0, scales0, act, corrections, exponents, blocks);
                result1 = Dot(kind, packed1, scales1, act, corrections, exponents, blocks);
                return;
        }
    }

    /// <summary>The exact integer sum of every block (<c>Σ int8a·int8w</c>), computed the way <paramref name="kind"/>'s dot product does.</summary>
    public static void BlockSums(Mxfp4KernelKind kind, byte* packed, sbyte* act, int* corrections, int blocks, int* sums)
    {
        switch (kind)
        {
            case Mxfp4KernelKind.Avx512:
            {
                var lanes = stackalloc int[16];
                for (int q = 0; q < blocks; q += 4)
                {
                    Avx512Lanes(packed + (q * 16), act + (q * 32), corrections + (q * 4)).Store(lanes);
                    for (int k = 0; k < 4; k++)
                    {
                        sums[q + k] = lanes[4 * k] + lanes[(4 * k) + 1] + lanes[(4 * k) + 2] + lanes[(4 * k) + 3];
                    }
                }

                break;
            }

            case Mxfp4KernelKind.Avx2:
            {
                var lanes = stackalloc int[8];
                for (int p = 0; p < blocks; p += 2)
                {
                    Avx2Lanes(packed + (p * 16), act + (p * 32), corrections + (p * 4)).Store(lanes);
                    sums[p] = lanes[0] + lanes[1] + lanes[2] + lanes[3];
                    sums[p + 1] = lanes[4] + lanes[5] + lanes[6] + lanes[7];
                }

                break;
            }

            case Mxfp4KernelKind.Vector128:
                for (int b = 0; b < blocks; b++)
                {
                    sums[b] = Vector128BlockSum(packed + (b * 16), act + (b * 32));
                }

                break;
            default:
                for (int b = 0; b < blocks; b++)
                {
                    sums[b] = ScalarBlockSum(packed + (b * 16), act + (b * 32));
                }

                break;
        }
    }

    private static int ScalarBlockSum(byte* packed, sbyte* act)
    {
        ReadOnlySpan<sbyte> table = E2M1.DoubledValues;
        int sum = 0;
        for (int i = 0; i < 16; i++)
        {
            sum += (table[packed[i] & 0xF] * act[i]) + (table[packed[i] >> 4] * act[16 + i]);
        }

        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float DotScalar(byte* packed, byte* scales, sbyte* act, int* exponents, int blocks)
    {
        float acc = 0;
        for (int b = 0; b < blocks; b++)
        {
            acc += ScalarBlockSum(packed + (b * 16), act + (b * 32)) * Factor(exponents[b * 4], scales[b]);
        }

        return acc;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Vector128BlockSum(byte* packed, sbyte* act)
    {
        Vector128<byte> v = Vector128.Load(packed);
        Vector128<sbyte> even = Vector128.Shuffle(SignedTable, (v & Vector128.Create((byte)0x0F)).AsSByte());
        Vector128<sbyte> odd = Vector128.Shuffle(SignedTable, Vector128.ShiftRightLogical(v, 4).AsSByte());
        Vector128<sbyte> ae = Vector128.Load(act);
        Vector128<sbyte> ao = Vector128.Load(act + 16);
        (Vector128<short> el, Vector128<short> eu) = Vector128.Widen(even);
        (Vector128<short> ol, Vector128<short> ou) = Vector128.Widen(odd);
        (Vector128<short> ael, Vector128<short> aeu) = Vector128.Widen(ae);
        (Vector128<short> aol, Vector128<short> aou) = Vector128.Widen(ao);
        // Each lane ≤ 4 · 144, the 8-lane total ≤ 4608: no int16 overflow.
        Vector128<short> products = (el * ael) + (eu * aeu) + (ol * aol) + (ou * aou);
        return Vector128.Sum(products);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float DotVector128(byte* packed, byte* scales, sbyte* act, int* exponents, int blocks)
    {
        float acc = 0;
        for (int b = 0; b < blocks; b++)
        {
            acc += Vector128BlockSum(packed + (b * 16), act + (b * 32)) * Factor(exponents[b * 4], scales[b]);
        }

        return acc;
    }

    /// <summary>Two blocks: 8 int32 lanes, lanes 0–3 summing to block 0's exact sum and 4–7 to block 1's.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Avx2Lanes(byte* packed, sbyte* act, int* corrections) =>
        Avx2LanesShared(packed, Avx.LoadVector256(act), Avx.LoadVector256(act + 32), Avx.LoadVector256(corrections));

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float DotAvx2(byte* packed, byte* scales, sbyte* act, int* corrections, int* exponents, int blocks)
    {
        Vector256<float> acc = Vector256<float>.Zero;
        for (int p = 0; p < blocks; p += 2)
        {
            Vector256<int> sums = Avx2Lanes(packed + (p * 16), act + (p * 32), corrections + (p * 4));
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sums), Avx2Factor(scales + p, Avx.LoadVector256(exponents + (p * 4))), acc);
        }

        return Vector256.Sum(acc);
    }

    /// <summary>Four blocks: 16 int32 lanes, lanes 4k–4k+3 summing to block k's exact sum.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Avx512Lanes(byte* packed, sbyte* act, int* corrections) =>
        Avx512LanesShared(packed, Vector512.Load(act), Vector512.Load(act + 64), Vector512.Load(corrections));

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float DotAvx512(byte* packed, byte* scales, sbyte* act, int* corrections, int* exponents, int blocks)
    {
        Vector512<float> acc = Vector512<float>.Zero;
        for (int q = 0; q < blocks; q += 4)
        {
            Vector512<int> sums = Avx512Lanes(packed + (q * 16), act + (q * 32), corrections + (q * 4));
            acc = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(sums), Avx512Factor(scales + q, Vector512.Load(exponents + (q * 4))), acc);
        }

        return HorizontalSum.Sum(acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Avx512LanesShared(byte* packed, Vector512<sbyte> ae, Vector512<sbyte> ao, Vector512<int> corrections)
    {
        Vector256<byte> half = Vector256.Create(OffsetTable, OffsetTable);
        Vector512<byte> table = Vector512.Create(half, half);
        Vector512<byte> mask = Vector512.Create((byte)0x0F);
        Vector512<byte> v = Vector512.Load(packed);
        Vector512<byte> wl = Avx512BW.Shuffle(table, v & mask);
        Vector512<byte> wh = Avx512BW.Shuffle(table, Avx512BW.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & mask);
        Vector512<short> s16 = Avx512BW.Add(Avx512BW.MultiplyAddAdjacent(wl, ae), Avx512BW.MultiplyAddAdjacent(wh, ao));
        return Avx512F.Add(Avx512BW.MultiplyAddAdjacent(s16, Vector512.Create((short)1)), corrections);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Avx512Factor(byte* scales, Vector512<int> exponents)
    {
        Vector128<byte> spread = Vector128.Create((byte)0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
        Vector128<byte> ew = Ssse3.Shuffle(Vector128.CreateScalarUnsafe(*(uint*)scales).AsByte(), spread);
        Vector512<int> e = Avx512F.Add(Avx512F.ConvertToVector512Int32(ew), exponents);
        e = Avx512F.Min(Avx512F.Max(e, Vector512<int>.Zero), Vector512.Create(254));
        return Avx512F.ShiftLeftLogical(e, 23).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DotAvx512x2(byte* packed0, byte* packed1, byte* scales0, byte* scales1, sbyte* act, int* corrections, int* exponents, int blocks, out float result0, out float result1)
    {
        Vector512<float> acc0 = Vector512<float>.Zero, acc1 = Vector512<float>.Zero;
        for (int q = 0; q < blocks; q += 4)
        {
            Vector512<sbyte> ae = Vector512.Load(act + (q * 32));
            Vector512<sbyte> ao = Vector512.Load(act + (q * 32) + 64);
            Vector512<int> corr = Vector512.Load(corrections + (q * 4));
            Vector512<int> exp = Vector512.Load(exponents + (q * 4));
            Vector512<int> s0 = Avx512LanesShared(packed0 + (q * 16), ae, ao, corr);
            Vector512<int> s1 = Avx512LanesShared(packed1 + (q * 16), ae, ao, corr);
            acc0 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(s0), Avx512Factor(scales0 + q, exp), acc0);
            acc1 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(s1), Avx512Factor(scales1 + q, exp), acc1);
        }

        result0 = HorizontalSum.Sum(acc0);
        result1 = HorizontalSum.Sum(acc1);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Avx2LanesShared(byte* packed, Vector256<sbyte> ae, Vector256<sbyte> ao, Vector256<int> corrections)
    {
        Vector256<byte> table = Vector256.Create(OffsetTable, OffsetTable);
        Vector256<byte> mask = Vector256.Create((byte)0x0F);
        Vector256<byte> v = Avx.LoadVector256(packed);
        Vector256<byte> wl = Avx2.Shuffle(table, v & mask);
        Vector256<byte> wh = Avx2.Shuffle(table, Avx2.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & mask);
        Vector256<short> s16 = Avx2.Add(Avx2.MultiplyAddAdjacent(wl, ae), Avx2.MultiplyAddAdjacent(wh, ao));
        return Avx2.Add(Avx2.MultiplyAddAdjacent(s16, Vector256.Create((short)1)), corrections);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Avx2Factor(byte* scales, Vector256<int> exponents)
    {
        Vector128<byte> spread = Vector128.Create((byte)0, 0, 0, 0, 1, 1, 1, 1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80);
        Vector128<byte> ew = Ssse3.Shuffle(Vector128.CreateScalarUnsafe(*(ushort*)scales).AsByte(), spread);
        Vector256<int> e = Avx2.Add(Avx2.ConvertToVector256Int32(ew), exponents);
        e = Avx2.Min(Avx2.Max(e, Vector256<int>.Zero), Vector256.Create(254));
        return Avx2.ShiftLeftLogical(e, 23).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DotAvx2x2(byte* packed0, byte* packed1, byte* scales0, byte* scales1, sbyte* act, int* corrections, int* exponents, int blocks, out float result0, out float result1)
    {
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = Vector256<float>.Zero;
        for (int p = 0; p < blocks; p += 2)
        {
            Vector256<sbyte> ae = Avx.LoadVector256(act + (p * 32));
            Vector256<sbyte> ao = Avx.LoadVector256(act + (p * 32) + 32);
            Vector256<int> corr = Avx.LoadVector256(corrections + (p * 4));
            Vector256<int> exp = Avx.LoadVector256(exponents + (p * 4));
            acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2LanesShared(packed0 + (p * 16), ae, ao, corr)), Avx2Factor(scales0 + p, exp), acc0);
            acc1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2LanesShared(packed1 + (p * 16), ae, ao, corr)), Avx2Factor(scales1 + p, exp), acc1);
        }

        result0 = Vector256.Sum(acc0);
        result1 = Vector256.Sum(acc1);
    }
}
