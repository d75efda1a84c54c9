using System.Runtime.CompilerServices;

namespace LocalMxfp4.Numerics.Mxfp4;

/// <summary>
/// The shared scale of an MX block: an unsigned biased exponent, value <c>2^(byte − 127)</c>, byte 0xFF is NaN.
/// There is no zero: an all-zero block (amax = 0) is stored with byte 0 (2^−127), whose elements decode to 0,
/// the same choice llama.cpp makes.
/// </summary>
public static class E8M0
{
    /// <summary>The exponent bias.</summary>
    public const int Bias = 127;

    /// <summary>The NaN encoding, written for blocks that contain a NaN or an infinity.</summary>
    public const byte NaN = 0xFF;

    /// <summary>E2M1's largest exponent (6 = 1.5 · 2²), subtracted so the block maximum lands in the top binade.</summary>
    private const int ElementMaxExponent = 2;

    /// <summary>True for the NaN byte.</summary>
    public static bool IsNaN(byte scale) => scale == NaN;

    /// <summary>The scale's value as float32 (byte 0 is the float32 subnormal 2^−127).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Decode(byte scale) => scale == NaN ? float.NaN : MathF.ScaleB(1f, scale - Bias);

    /// <summary>The scale's value as float64.</summary>
    public static double DecodeDouble(byte scale) => scale == NaN ? double.NaN : Math.ScaleB(1.0, scale - Bias);

    /// <summary>
    /// The scale byte for a block whose largest magnitude is <paramref name="amax"/> under <paramref name="rule"/>.
    /// NaN or infinite amax gives <see cref="NaN"/>; amax = 0 gives 0; exponents are clamped to [−127, 127].
    /// </summary>
    public static byte FromAmax(float amax, ScaleRule rule)
    {
        if (!float.IsFinite(amax))
        {
            return NaN;
        }

        amax = MathF.Abs(amax);
        if (amax == 0f)
        {
            return 0;
        }

        uint bits = BitConverter.SingleToUInt32Bits(amax);
        int field = (int)(bits >> 23);
        if (field != 0)
        {
            // Normal amax: floor(log2 amax) = field − 127, so the Floor byte is field − 2; the mantissa bits decide
            // Even's and RoundUp's extra binade (m ≥ 1.75 and m > 1.5).
            uint fraction = bits & 0x7F_FFFFu;
            int up = rule switch
            {
                ScaleRule.Floor => 0,
                ScaleRule.Even => fraction >= 0x60_0000u ? 1 : 0,
                ScaleRule.RoundUp => fraction > 0x40_0000u ? 1 : 0,
                _ => throw new ArgumentOutOfRangeException(nameof(rule), rule, "Unknown scale rule."),
            };
            return (byte)Math.Clamp(field - ElementMaxExponent + up, 0, 254);
        }

        // Exact for normals and subnormals alike: amax = m · 2^k with m in [1, 2).
        int k = MathF.ILogB(amax);
        float mantissa = MathF.ScaleB(amax, -k);
        int exponent = rule switch
        {
            ScaleRule.Floor => k - ElementMaxExponent,
            ScaleRule.Even => (mantissa >= 1.75f ? k + 1 : k) - ElementMaxExponent,
            // 6 · 2^(k−2) = 1.5 · 2^k: when amax is above it, one more binade keeps amax from clipping.
            ScaleRule.RoundUp => (mantissa > 1.5f ? k + 1 : k) - ElementMaxExponent,
            _ => throw new ArgumentOutOfRangeException(nameof(rule), rule, "Unknown scale rule."),
        };
        return (byte)Math.Clamp(exponent + Bias, 0, 254);
    }

    /// <summary>
    /// The factor that maps block values onto the E2M1 grid: <c>2^−(byte − 127)</c>. Multiplying by a power of
    /// two is exact whenever the result is a normal float, which every value that can round to a non-zero code is.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float InverseScale(byte scale) => MathF.ScaleB(1f, Bias - scale);
}
