using LocalMxfp4.Models.Quantized;
using LocalMxfp4.Quantization.Transforms;

namespace LocalMxfp4.Quantization.Tests;

public class TransformTests
{
    [Fact]
    public void HelmertBaseIsOrthogonalWithAUniformFirstRow()
    {
        double[] h = OrthogonalMatrices.Helmert();
        Assert.True(OrthogonalMatrices.OrthogonalityError(h) < 1e-12);
        for (int j = 0; j < 32; j++)
        {
            Assert.Equal(1 / Math.Sqrt(32), h[j], 12);
        }
    }

    [Fact]
    public void HadamardIsOrthogonalAndSymmetric()
    {
        double[] h = OrthogonalMatrices.Hadamard();
        Assert.True(OrthogonalMatrices.OrthogonalityError(h) < 1e-12);
        for (int i = 0; i < 32; i++)
        {
            for (int j = 0; j < 32; j++)
            {
                Assert.Equal(h[(i * 32) + j], h[(j * 32) + i]);
                Assert.Equal(1 / Math.Sqrt(32), Math.Abs(h[(i * 32) + j]), 12);
            }
        }
    }

    [Theory]
    [InlineData(31, 1)]
    [InlineData(32, 2)]
    public void RandomOrthogonalIsOrthogonalAndSeeded(int n, int seed)
    {
        double[] a = OrthogonalMatrices.RandomOrthogonal(n, new Random(seed));
        Assert.True(OrthogonalMatrices.OrthogonalityError(a, n) < 1e-12);
        Assert.Equal(a, OrthogonalMatrices.RandomOrthogonal(n, new Random(seed)));
        Assert.NotEqual(a, OrthogonalMatrices.RandomOrthogonal(n, new Random(seed + 10)));
    }

    private static float[] ActivationsWithOutliers(int tokens, int channels, int seed)
    {
        var rng = new Random(seed);
        var x = new float[tokens * channels];
        for (int i = 0; i < x.Length; i++)
        {
            x[i] = (float)OrthogonalMatrices.Gaussian(rng);
        }

        // Persistent outlier channels, as in LLaMA-3's activations.
        foreach (int c in new[] { 5, 37, 70 }.Where(c => c < channels))
        {
            for (int t = 0; t < tokens; t++)
            {
                x[(t * channels) + c] *= 40;
            }
        }

        return x;
    }

    [Theory]
    [InlineData(RotationIndexMode.RowMod)]
    [InlineData(RotationIndexMode.Channel)]
    public void GreedyRotationIsOrthogonalAndShrinksTheRange(RotationIndexMode mode)
    {
        float[] x = ActivationsWithOutliers(64, 96, 3);
        DuQuantRotation.Result r = DuQuantRotation.Search(x, 96, 64, mode, new Random(2));
        Assert.True(OrthogonalMatrices.OrthogonalityError(r.Rotation) < 1e-9);
        Assert.True(r.StepsKept > 0);
        Assert.True(r.RangeAfter < 0.6 * r.RangeBefore, $"range {r.RangeBefore} → {r.RangeAfter}");

        // The reported range is the range of the input rotated by the returned matrix.
        double max = double.MinValue, min = double.MaxValue;
        for (int row = 0; row < x.Length / 32; row++)
        {
            for (int j = 0; j < 32; j++)
            {
                double v = 0;
                for (int i = 0; i < 32; i++)
                {
                    v += x[(row * 32) + i] * r.Rotation[(i * 32) + j];
                }

                max = Math.Max(max, v);
                min = Math.Min(min, v);
            }
        }

        Assert.Equal(r.RangeAfter, max - min, 2);
    }

    [Fact]
    public void ZeroStepsIsTheIdentity()
    {
        float[] x = ActivationsWithOutliers(8, 32, 4);
        DuQuantRotation.Result r = DuQuantRotation.Search(x, 32, 0, RotationIndexMode.RowMod, new Random(1));
        Assert.Equal(OrthogonalMatrices.Identity(), r.Rotation);
        Assert.Equal(0, r.StepsKept);
    }

    [Fact]
    public void SmoothingFactorsFollowTheFormulaAndFoldingKeepsTheProduct()
    {
        float[] act = [8f, 0.5f, 1e-9f];
        float[] w = [0.5f, -2f, 0.1f, 0.25f, 1f, -0.3f]; // 2 rows × 3 channels
        float[] s = Smoothing.Factors(act, w, 0.6);
        Assert.Equal(Math.Pow(8, 0.6) / Math.Pow(0.5, 0.4), s[0], 4);
        Assert.Equal(Math.Max(Math.Pow(0.5, 0.6) / Math.Pow(2, 0.4), 0.01), s[1], 4);
        Assert.Equal(0.01f, s[2]); // floor at 1e-2

        float[] x = [1.5f, -2f, 3f];
        double before = (x[0] * w[0]) + (x[1] * w[1]) + (x[2] * w[2]);
        float[] ws = (float[])w.Clone();
        Smoothing.ScaleColumns(ws, s);
        float[] xs = [x[0] / s[0], x[1] / s[1], x[2] / s[2]];
        Assert.Equal(before, (xs[0] * ws[0]) + (xs[1] * ws[1]) + (xs[2] * ws[2]), 4);
    }
}
