using LocalMxfp4.Models.Quantized;

namespace LocalMxfp4.Quantization.Transforms;

/// <summary>
/// DuQuant++'s greedy outlier-aware rotation of one linear input (spec §3.5). The activation tensor is viewed as rows
/// of 32 (every MX block of every token). Each step takes the global extreme, picks an index k from it (the released
/// code's row mod 32, or the paper's channel), and multiplies every row by <c>R_k = P_k · R̃ · diag(1, Q′) · P_k</c>,
/// which spreads coordinate k over all 32 outputs. The prefix of steps with the smallest global range (max − min) is
/// kept, so the result is never worse than no rotation on the calibration data. One R serves every block.
/// </summary>
public static class DuQuantRotation
{
    private const int N = OrthogonalMatrices.N;

    /// <summary>The search's outcome.</summary>
    /// <param name="Rotation">The chosen 32×32 matrix (row-major), applied as <c>x_b ← x_b · R</c>.</param>
    /// <param name="StepsKept">How many greedy steps it is the product of (0 = identity).</param>
    /// <param name="RangeBefore">Global max − min of the input.</param>
    /// <param name="RangeAfter">Global max − min after the rotation.</param>
    public sealed record Result(double[] Rotation, int StepsKept, double RangeBefore, double RangeAfter);

    /// <summary>Searches the rotation for <paramref name="activations"/> (<c>[tokens, channels]</c>, channels a multiple of 32).</summary>
    public static Result Search(ReadOnlySpan<float> activations, int channels, int steps, RotationIndexMode mode, Random rng)
    {
        if (channels % N != 0 || activations.Length % channels != 0)
        {
            throw new ArgumentException($"Activations must be whole rows of {channels} channels, a multiple of 32.");
        }

        ArgumentOutOfRangeException.ThrowIfNegative(steps);
        int rows = activations.Length / N;
        var cur = new float[activations.Length];
        activations.CopyTo(cur);

        // Rot = R̃ · diag(1, Q′): one random Q′ per search, as the reference code draws one per quantizer.
        double[] q = OrthogonalMatrices.RandomOrthogonal(N - 1, rng);
        var diag = new double[N * N];
        diag[0] = 1;
        for (int i = 0; i < N - 1; i++)
        {
            for (int j = 0; j < N - 1; j++)
            {
                diag[((i + 1) * N) + j + 1] = q[(i * (N - 1)) + j];
            }
        }

        double[] rot = OrthogonalMatrices.Multiply(OrthogonalMatrices.Helmert(), diag);
        double[] accumulated = OrthogonalMatrices.Identity();
        double[] best = OrthogonalMatrices.Identity();
        (double range, int maxIndex, int minIndex, float maxValue, float minValue) = Extremes(cur);
        double before = range, bestRange = range;
        int bestSteps = 0;
        var step = new float[N * N];
        var scratch = new float[N];
        for (int s = 1; s <= steps; s++)
        {
            int pick = Math.Abs(maxValue) > Math.Abs(minValue) ? maxIndex : minIndex;
            int k = mode == RotationIndexMode.RowMod ? (pick / N) % N : pick % N;
            double[] rk = (double[])rot.Clone();
            OrthogonalMatrices.SwapRowsAndColumns(rk, 0, k);
            for (int i = 0; i < rk.Length; i++)
            {
                step[i] = (float)rk[i];
            }

            ApplyInPlace(cur, rows, step, scratch);
            accumulated = OrthogonalMatrices.Multiply(accumulated, rk);
            (range, maxIndex, minIndex, maxValue, minValue) = Extremes(cur);
            if (range < bestRange)
            {
                bestRange = range;
                bestSteps = s;
                best = accumulated;
            }
        }

        return new Result(best, bestSteps, before, bestRange);
    }

    /// <summary><c>row ← row · m</c> for every 32-row of <paramref name="data"/>.</summary>
    private static void ApplyInPlace(float[] data, int rows, float[] m, float[] scratch)
    {
        for (int r = 0; r < rows; r++)
        {
            Span<float> row = data.AsSpan(r * N, N);
            Array.Clear(scratch);
            for (int i = 0; i < N; i++)
            {
                float v = row[i];
                if (v != 0)
                {
                    System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(m.AsSpan(i * N, N), v, scratch, scratch);
                }
            }

            scratch.CopyTo(row);
        }
    }

    private static (double Range, int MaxIndex, int MinIndex, float MaxValue, float MinValue) Extremes(float[] data)
    {
        int maxIndex = System.Numerics.Tensors.TensorPrimitives.IndexOfMax(data);
        int minIndex = System.Numerics.Tensors.TensorPrimitives.IndexOfMin(data);
        return ((double)data[maxIndex] - data[minIndex], maxIndex, minIndex, data[maxIndex], data[minIndex]);
    }
}
