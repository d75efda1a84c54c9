using LocalMxfp4.Engine.Layers;
using LocalMxfp4.Numerics.Mxfp4;

namespace LocalMxfp4.Testing;

/// <summary>
/// The slow statement of a W4A4 linear layer: transform each input block (the same float64 block transform the
/// engine uses), fake-quantize it with the float64 reference codec, dequantize weights and activations to float64,
/// and take the float64 dot product. Shares no kernel code with <see cref="Mxfp4Linear"/>.
/// </summary>
public sealed class ReferenceMxfp4Linear(Mxfp4Matrix weights, BlockTransform? transform, ScaleRule rule) : ILinear
{
    public int InputSize => weights.Columns;

    public int OutputSize => weights.Rows;

    public void Forward(ReadOnlySpan<float> input, Span<float> output, int rows)
    {
        int blocks = weights.Blocks;
        for (int t = 0; t < rows; t++)
        {
            double[] a = FakeQuantizedActivation(input.Slice(t * InputSize, InputSize));
            for (int o = 0; o < OutputSize; o++)
            {
                double sum = 0;
                for (int i = 0; i < blocks * 32; i++)
                {
                    int b = i / 32, e = i % 32;
                    byte packed = weights.Packed[(((o * blocks) + b) * 16) + (e / 2)];
                    int code = (e & 1) == 0 ? packed & 0xF : packed >> 4;
                    sum += a[i] * Mxfp4ReferenceCodec.Decode(code, weights.Scales[(o * blocks) + b]);
                }

                output[(t * OutputSize) + o] = (float)sum;
            }
        }
    }

    /// <summary>The transformed, fake-quantized activation row in float64.</summary>
    public double[] FakeQuantizedActivation(ReadOnlySpan<float> x)
    {
        int blocks = weights.Blocks;
        var padded = new float[blocks * 32];
        x.CopyTo(padded);
        if (transform is not null)
        {
            var rotated = new float[32];
            for (int b = 0; b < blocks; b++)
            {
                transform.Apply(b, padded.AsSpan(b * 32, 32), rotated);
                rotated.CopyTo(padded, b * 32);
            }
        }

        (byte[] codes, byte[] scales) = Mxfp4ReferenceCodec.QuantizeRow(padded, rule);
        var result = new double[blocks * 32];
        for (int i = 0; i < result.Length; i++)
        {
            result[i] = Mxfp4ReferenceCodec.Decode(codes[i], scales[i / 32]);
        }

        return result;
    }
}
