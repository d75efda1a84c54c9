using LocalMxfp4.Engine.Layers;

namespace LocalMxfp4.Quantization.Calibration;

/// <summary>Passes a linear layer's input to an observer, then runs the layer unchanged.</summary>
internal sealed class ObservingLinear(ILinear inner, Action<ReadOnlySpan<float>, int> observe) : ILinear
{
    public int InputSize => inner.InputSize;

    public int OutputSize => inner.OutputSize;

    public void Forward(ReadOnlySpan<float> input, Span<float> output, int rows)
    {
        observe(input[..(rows * InputSize)], rows);
        inner.Forward(input, output, rows);
    }
}

/// <summary>Per-channel running max |x| of one linear input (SmoothQuant's act_scales).</summary>
internal sealed class ChannelMax(int channels)
{
    public float[] Values { get; } = new float[channels];

    public void Observe(ReadOnlySpan<float> input, int rows)
    {
        int c = Values.Length;
        for (int r = 0; r < rows; r++)
        {
            ReadOnlySpan<float> row = input.Slice(r * c, c);
            for (int j = 0; j < c; j++)
            {
                Values[j] = Math.Max(Values[j], Math.Abs(row[j]));
            }
        }
    }
}
