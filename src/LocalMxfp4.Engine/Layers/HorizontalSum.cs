using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace LocalMxfp4.Engine.Layers;

/// <summary>
/// The one horizontal sum every AVX-512 kernel ends its accumulators with: 16 lanes → 8 (<c>i + i+8</c>) → 4
/// (<c>i + i+4</c>) → 2 (<c>i + i+2</c>) → 1. <see cref="Sum4"/> reduces four accumulators at once in about a fifth
/// of the instructions of four <c>Vector512.Sum</c> calls, along exactly the same tree as <see cref="Sum"/>, so a
/// one-row kernel and a tiled one give the same bits.
/// </summary>
internal static class HorizontalSum
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(Vector512<float> a)
    {
        Vector256<float> v8 = a.GetLower() + a.GetUpper();
        Vector128<float> v4 = v8.GetLower() + v8.GetUpper();
        Vector128<float> v2 = v4 + Sse.Shuffle(v4, v4, 0b01_00_11_10);
        Vector128<float> v1 = v2 + Sse.Shuffle(v2, v2, 0b10_11_00_01);
        return v1.ToScalar();
    }

    /// <summary>The sums of four accumulators, lane k = <see cref="Sum"/>(a_k).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Sum4(Vector512<float> a0, Vector512<float> a1, Vector512<float> a2, Vector512<float> a3)
    {
        // [a.q0 + a.q2, a.q1 + a.q3] for two accumulators per register: the 512 → 256 step.
        Vector512<float> s01 = Avx512F.Shuffle4x128(a0, a1, 0x44) + Avx512F.Shuffle4x128(a0, a1, 0xEE);
        Vector512<float> s23 = Avx512F.Shuffle4x128(a2, a3, 0x44) + Avx512F.Shuffle4x128(a2, a3, 0xEE);
        // One 128-bit quarter per accumulator: the 256 → 128 step.
        Vector512<float> u = Avx512F.Shuffle4x128(s01, s23, 0x88) + Avx512F.Shuffle4x128(s01, s23, 0xDD);
        Vector512<float> v2 = u + Avx512F.Shuffle(u, u, 0b01_00_11_10);
        Vector512<float> v1 = v2 + Avx512F.Shuffle(v2, v2, 0b10_11_00_01);
        return Avx512F.PermuteVar16x32(v1, Vector512.Create(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)).GetLower().GetLower();
    }
}
