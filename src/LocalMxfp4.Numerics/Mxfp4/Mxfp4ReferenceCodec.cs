namespace LocalMxfp4.Numerics.Mxfp4;

/// <summary>
/// The plain, scalar float64 statement of MXFP4 quantization that every optimised path is tested against.
/// It shares nothing with <see cref="Mxfp4Codec"/> beyond the format tables: the scale exponent comes from
/// <c>log2</c> in float64 and each element is rounded by an explicit nearest-value search with ties to the even code.
/// </summary>
public static class Mxfp4ReferenceCodec
{
    private static readonly double[] Magnitudes = [0, 0.5, 1, 1.5, 2, 3, 4, 6];

    /// <summary>The scale exponent of a block (unclamped), or null for an all-zero block.</summary>
    public static int? ScaleExponent(ReadOnlySpan<double> block, ScaleRule rule)
    {
        double amax = 0;
        foreach (double v in block)
        {
            amax = Math.Max(amax, Math.Abs(v));
        }

        if (amax == 0)
        {
            return null;
        }

        int k = (int)Math.Floor(Math.Log2(amax));
        // Log2 can be off by one ulp right at a power of two; settle the binade exactly.
        if (Math.ScaleB(1.0, k) > amax)
        {
            k--;
        }
        else if (Math.ScaleB(1.0, k + 1) <= amax)
        {
            k++;
        }

        return rule switch
        {
            ScaleRule.Floor => k - 2,
            ScaleRule.Even => (amax >= 1.75 * Math.ScaleB(1.0, k) ? k + 1 : k) - 2,
            ScaleRule.RoundUp => SmallestNonClipping(amax, k),
            _ => throw new ArgumentOutOfRangeException(nameof(rule)),
        };
    }

    /// <summary>The E2M1 code nearest to <paramref name="scaled"/>, ties to the even code, saturating at ±6.</summary>
    public static int EncodeElement(double scaled)
    {
        // Saturate first: far above 6 every grid point is "equally far" once float64 rounds the distances.
        double m = Math.Min(Math.Abs(scaled), 6.0);
        int best = 0;
        double bestDistance = double.PositiveInfinity;
        for (int c = 0; c < Magnitudes.Length; c++)
        {
            double d = Math.Abs(m - Magnitudes[c]);
            if (d < bestDistance || (d == bestDistance && (c & 1) == 0))
            {
                best = c;
                bestDistance = d;
            }
        }

        return (scaled < 0 || (scaled == 0 && double.IsNegative(scaled))) ? best | 8 : best;
    }

    /// <summary>Quantizes a row (zero-padded to whole blocks) into codes (one per element, unpacked) and scale bytes.</summary>
    public static (byte[] Codes, byte[] Scales) QuantizeRow(ReadOnlySpan<float> row, ScaleRule rule)
    {
        int blocks = (row.Length + 31) / 32;
        var codes = new byte[blocks * 32];
        var scales = new byte[blocks];
        var block = new double[32];
        for (int b = 0; b < blocks; b++)
        {
            Array.Clear(block);
            bool finite = true;
            for (int i = 0; i < 32 && (b * 32) + i < row.Length; i++)
            {
                block[i] = row[(b * 32) + i];
                finite &= double.IsFinite(block[i]);
            }

            if (!finite)
            {
                scales[b] = 0xFF;
                continue;
            }

            int? e = ScaleExponent(block, rule);
            int exponent = Math.Clamp(e ?? -127, -127, 127);
            scales[b] = (byte)(exponent + 127);
            for (int i = 0; i < 32; i++)
            {
                codes[(b * 32) + i] = (byte)EncodeElement(block[i] / Math.ScaleB(1.0, exponent));
            }
        }

        return (codes, scales);
    }

    /// <summary>The value of one element given its code and scale byte, in float64.</summary>
    public static double Decode(int code, byte scale) =>
        scale == 0xFF ? double.NaN : (((code & 8) != 0) ? -1 : 1) * Magnitudes[code & 7] * Math.ScaleB(1.0, scale - 127);

    private static int SmallestNonClipping(double amax, int k)
    {
        int e = k - 3;
        while (6 * Math.ScaleB(1.0, e) < amax)
        {
            e++;
        }

        return e;
    }
}
