using LocalMxfp4.Engine.Layers;
using LocalMxfp4.Models.Quantized;
using LocalMxfp4.Numerics.Mxfp4;
using LocalMxfp4.Quantization.Gptq;
using LocalMxfp4.Quantization.Transforms;

namespace LocalMxfp4.Quantization.Calibration;

/// <summary>
/// A linear layer as the calibration passes see it: the input goes through its site's divisor and rotation (the
/// site searches its rotation on the first input it sees), is MXFP4 fake-quantized, optionally feeds a Hessian, and
/// meets the rotated weights — fake-quantized too, or left in float while GPTQ collects statistics.
/// </summary>
internal sealed class FakeQuantLinear(
    SiteTransform site,
    float[] foldedWeight,
    int rows,
    ScaleRule rule,
    WeightScaleMode weightScales,
    bool quantizeWeights,
    ParallelRows parallel,
    HessianAccumulator? hessian = null,
    bool quantizeActivations = true) : ILinear
{
    private DenseLinear? _weights;

    public int InputSize => site.Channels;

    public int OutputSize => rows;

    public void Forward(ReadOnlySpan<float> input, Span<float> output, int n)
    {
        float[] x = site.Prepare(input, n);
        site.EnsureRotation(x);
        BlockTransform? rotation = site.RotationTransform();
        int width = site.PaddedChannels;
        var rotated = new float[32];
        var packed = new byte[site.Blocks * 16];
        var scales = new byte[site.Blocks];
        for (int t = 0; t < n; t++)
        {
            Span<float> row = x.AsSpan(t * width, width);
            if (rotation is not null)
            {
                for (int b = 0; b < site.Blocks; b++)
                {
                    rotation.Apply(b, row.Slice(b * 32, 32), rotated);
                    rotated.CopyTo(row.Slice(b * 32, 32));
                }
            }

            if (quantizeActivations)
            {
                Mxfp4Codec.QuantizeRow(row, packed, scales, rule);
                Mxfp4Codec.DequantizeRow(packed, scales, row);
            }
        }

        hessian?.Add(x, n);
        _weights ??= BuildWeights();
        _weights.Forward(x, output, n);
    }

    private DenseLinear BuildWeights()
    {
        float[] w = site.RotateWeight(foldedWeight, rows);
        if (quantizeWeights)
        {
            Mxfp4Matrix q = WeightQuantizer.Quantize(w, rows, site.PaddedChannels, rule, weightScales);
            w = q.Dequantize();
        }

        return new DenseLinear(w, rows, site.PaddedChannels, parallel);
    }
}
