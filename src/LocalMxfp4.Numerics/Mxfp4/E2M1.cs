using System.Runtime.CompilerServices;

namespace LocalMxfp4.Numerics.Mxfp4;

/// <summary>
/// The FP4 element type of MXFP4: 1 sign, 2 exponent (bias 1), 1 mantissa bit. Magnitudes
/// {0, 0.5, 1, 1.5, 2, 3, 4, 6}; codes 8–15 are the negatives (8 is −0). No Inf, no NaN.
/// </summary>
public static class E2M1
{
    /// <summary>The largest finite magnitude; larger inputs saturate to it.</summary>
    public const float MaxValue = 6.0f;

    private static readonly float[] ValueTable =
    [
        0f, 0.5f, 1f, 1.5f, 2f, 3f, 4f, 6f,
        -0f, -0.5f, -1f, -1.5f, -2f, -3f, -4f, -6f,
    ];

    /// <summary>The 16 code values as float32, indexed by code.</summary>
    public static ReadOnlySpan<float> Values => ValueTable;

    /// <summary>
    /// The 16 code values doubled into int8 {0, ±1, ±2, ±3, ±4, ±6, ±8, ±12}: the integer form that makes
    /// the W4A4 block dot product an exact int32 sum (the two factors of ½ go into the scale exponent).
    /// </summary>
    public static ReadOnlySpan<sbyte> DoubledValues => [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

    /// <summary>The value of a 4-bit code (only the low 4 bits are read).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Decode(int code) => ValueTable[code & 0xF];

    /// <summary>
    /// Rounds an already-scaled value to the nearest E2M1 code, ties to the even code (mantissa bit 0),
    /// saturating at ±6. The sign is kept even when the magnitude rounds to zero (−0 is code 8), as the
    /// hardware conversion <c>cvt.rn.satfinite.e2m1x2.f32</c> does. NaN encodes as +0.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Encode(float value)
    {
        if (float.IsNaN(value))
        {
            return 0;
        }

        float m = MathF.Abs(value);
        int magnitude =
            (m > 0.25f ? 1 : 0) + (m >= 0.75f ? 1 : 0) + (m > 1.25f ? 1 : 0) + (m >= 1.75f ? 1 : 0) +
            (m > 2.5f ? 1 : 0) + (m >= 3.5f ? 1 : 0) + (m > 5f ? 1 : 0);
        return float.IsNegative(value) ? magnitude | 8 : magnitude;
    }
}
