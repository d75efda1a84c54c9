namespace LocalMxfp4.Engine.Layers;

/// <summary>Root-mean-square normalisation with a learned per-channel gain (no mean subtraction, no bias).</summary>
public static class RmsNorm
{
    /// <summary>Normalises each of <paramref name="rows"/> rows of <paramref name="input"/> into <paramref name="output"/>.</summary>
    public static void Apply(ReadOnlySpan<float> input, ReadOnlySpan<float> weight, Span<float> output, int rows, double epsilon)
    {
        int width = weight.Length;
        for (int r = 0; r < rows; r++)
        {
            ReadOnlySpan<float> x = input.Slice(r * width, width);
            Span<float> y = output.Slice(r * width, width);
            // The sum of squares in float64: a 4096-wide residual stream with outliers loses digits in float32.
            double sumSquares = 0;
            foreach (float v in x)
            {
                sumSquares += (double)v * v;
            }

            float scale = (float)(1.0 / Math.Sqrt((sumSquares / width) + epsilon));
            for (int i = 0; i < width; i++)
            {
                y[i] = x[i] * scale * weight[i];
            }
        }
    }
}
