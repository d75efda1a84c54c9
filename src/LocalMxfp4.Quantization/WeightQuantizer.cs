using LocalMxfp4.Models.Quantized;
using LocalMxfp4.Numerics.Mxfp4;

namespace LocalMxfp4.Quantization;

/// <summary>Round-to-nearest MXFP4 quantization of a (rotated, padded) weight matrix, with the scale rule or a per-block exponent search.</summary>
public static class WeightQuantizer
{
    /// <summary>Quantizes <c>[rows, paddedColumns]</c> and labels it with the logical input width <paramref name="columns"/>.</summary>
    public static Mxfp4Matrix Quantize(float[] padded, int rows, int columns, ScaleRule rule, WeightScaleMode mode)
    {
        int blocks = Mxfp4Codec.BlockCount(columns);
        int width = blocks * 32;
        var packed = new byte[(long)rows * blocks * 16];
        var scales = new byte[(long)rows * blocks];
        Mxfp4Codec.QuantizeMatrix(padded, rows, width, packed, scales, rule);
        if (mode == WeightScaleMode.Search)
        {
            SearchExponents(padded, rows, width, packed, scales);
        }

        return new Mxfp4Matrix(rows, columns, packed, scales);
    }

    /// <summary>
    /// Per block, tries the neighbouring exponents of the rule's choice and keeps the one with the least squared
    /// error; every result is still a standard E8M0 byte.
    /// </summary>
    private static void SearchExponents(float[] matrix, int rows, int width, byte[] packed, byte[] scales)
    {
        int blocks = width / 32;
        Span<byte> candidate = stackalloc byte[16];
        Span<float> decoded = stackalloc float[32];
        for (int r = 0; r < rows; r++)
        {
            for (int b = 0; b < blocks; b++)
            {
                int blockIndex = (r * blocks) + b;
                ReadOnlySpan<float> values = matrix.AsSpan((r * width) + (b * 32), 32);
                Span<byte> bestPacked = packed.AsSpan(blockIndex * 16, 16);
                byte bestScale = scales[blockIndex];
                double bestError = Error(values, bestPacked, bestScale, decoded);
                foreach (int delta in new[] { -1, 1 })
                {
                    int e = bestScale + delta;
                    if (e is < 0 or > 254 || bestScale == E8M0.NaN)
                    {
                        continue;
                    }

                    EncodeWithScale(values, (byte)e, candidate);
                    double error = Error(values, candidate, (byte)e, decoded);
                    if (error < bestError)
                    {
                        bestError = error;
                        candidate.CopyTo(bestPacked);
                        scales[blockIndex] = (byte)e;
                    }
                }
            }
        }
    }

    internal static void EncodeWithScale(ReadOnlySpan<float> values, byte scale, Span<byte> packed)
    {
        float inv = E8M0.InverseScale(scale);
        for (int i = 0; i < 16; i++)
        {
            packed[i] = (byte)(E2M1.Encode(values[2 * i] * inv) | (E2M1.Encode(values[(2 * i) + 1] * inv) << 4));
        }
    }

    private static double Error(ReadOnlySpan<float> values, ReadOnlySpan<byte> packed, byte scale, Span<float> decoded)
    {
        Mxfp4Codec.DequantizeRow(packed, [scale], decoded);
        double sum = 0;
        for (int i = 0; i < 32; i++)
        {
            double d = values[i] - decoded[i];
            sum += d * d;
        }

        return sum;
    }
}
