namespace LocalMxfp4.Quantization.Gptq;

/// <summary>Accumulates <c>H = Σ x xᵀ</c> (float64) over the inputs a linear layer's weights will meet.</summary>
public sealed class HessianAccumulator(int width)
{
    /// <summary>Input width.</summary>
    public int Width { get; } = width;

    /// <summary>The sum so far, row-major <c>[Width, Width]</c>.</summary>
    public double[] Sum { get; } = new double[width * width];

    /// <summary>Rows accumulated.</summary>
    public long Count { get; private set; }

    /// <summary>Adds <paramref name="rows"/> rows of <see cref="Width"/> values.</summary>
    public void Add(ReadOnlySpan<float> x, int rows)
    {
        int w = Width;
        var row = new double[w];
        for (int t = 0; t < rows; t++)
        {
            for (int i = 0; i < w; i++)
            {
                row[i] = x[(t * w) + i];
            }

            for (int i = 0; i < w; i++)
            {
                double xi = row[i];
                if (xi == 0)
                {
                    continue;
                }

                // Upper triangle only; Gptq mirrors it.
                Span<double> target = Sum.AsSpan((i * w) + i, w - i);
                System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(row.AsSpan(i), xi, target, target);
            }
        }

        Count += rows;
    }
}
