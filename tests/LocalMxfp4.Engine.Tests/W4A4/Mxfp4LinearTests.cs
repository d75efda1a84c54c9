using LocalMxfp4.Engine.Layers;
using LocalMxfp4.Numerics.Mxfp4;
using LocalMxfp4.Testing;

namespace LocalMxfp4.Engine.Tests.W4A4;

public class Mxfp4LinearTests
{
    public static TheoryData<Mxfp4KernelKind> Kernels()
    {
        var data = new TheoryData<Mxfp4KernelKind>();
        foreach (Mxfp4KernelKind k in Enum.GetValues<Mxfp4KernelKind>())
        {
            data.Add(k);
        }

        return data;
    }

    internal static Mxfp4Matrix RandomWeights(Random rng, int rows, int columns)
    {
        var w = new float[rows * columns];
        for (int i = 0; i < w.Length; i++)
        {
            w[i] = (float)((rng.NextDouble() - 0.5) * Math.Pow(2, rng.Next(-6, 3)));
        }

        return Mxfp4Matrix.Quantize(w, rows, columns, ScaleRule.Floor);
    }

    internal static float[] RandomActivations(Random rng, int count)
    {
        var x = new float[count];
        for (int i = 0; i < count; i++)
        {
            double v = (rng.NextDouble() - 0.5) * 4;
            x[i] = (float)(rng.Next(50) == 0 ? v * 60 : v); // a few outliers
        }

        return x;
    }

    internal static BlockTransform RandomOrthogonal(Random rng, int blocks, bool perBlock)
    {
        int count = perBlock ? blocks : 1;
        var all = new float[count * 1024];
        for (int m = 0; m < count; m++)
        {
            // Gram–Schmidt on a random matrix: orthogonal, different per seed.
            var q = new double[32, 32];
            for (int i = 0; i < 32; i++)
            {
                for (int j = 0; j < 32; j++)
                {
                    q[i, j] = rng.NextDouble() - 0.5;
                }

                for (int k = 0; k < i; k++)
                {
                    double dot = 0;
                    for (int j = 0; j < 32; j++)
                    {
                        dot += q[i, j] * q[k, j];
                    }

                    for (int j = 0; j < 32; j++)
                    {
                        q[i, j] -= dot * q[k, j];
                    }
                }

                double norm = 0;
                for (int j = 0; j < 32; j++)
                {
                    norm += q[i, j] * q[i, j];
                }

                for (int j = 0; j < 32; j++)
                {
                    q[i, j] /= Math.Sqrt(norm);
                    all[(m * 1024) + (i * 32) + j] = (float)q[i, j];
                }
            }
        }

        return new BlockTransform(all, blocks);
    }

    [Theory]
    [MemberData(nameof(Kernels))]
    public void SimdBlockSumsEqualTheScalarKernelExactly(Mxfp4KernelKind kind)
    {
        Assert.SkipUnless(Mxfp4DotKernels.IsSupported(kind), $"{kind} is not supported on this CPU");
        var rng = new Random(100 + (int)kind);
        var parallel = new ParallelRows(1);
        foreach ((int rows, int columns) in new[] { (7, 64), (5, 172), (9, 4096 + 32) })
        {
            Mxfp4Matrix w = RandomWeights(rng, rows, columns);
            var scalar = new Mxfp4Linear(w, null, ScaleRule.Floor, parallel, Mxfp4KernelKind.Scalar);
            var simd = new Mxfp4Linear(w, null, ScaleRule.Floor, parallel, kind);
            float[] x = RandomActivations(rng, 3 * columns);
            // Activation buffers are per-thread and reused, so take each kernel's sums before quantizing for the other.
            Mxfp4Activations a1 = scalar.QuantizeActivations(x, 3);
            int[][] expected = [.. from t in Enumerable.Range(0, 3) from o in Enumerable.Range(0, rows) select scalar.BlockSums(a1, o, t)];
            Mxfp4Activations a2 = simd.QuantizeActivations(x, 3);
            int[][] actual = [.. from t in Enumerable.Range(0, 3) from o in Enumerable.Range(0, rows) select simd.BlockSums(a2, o, t)];
            Assert.Equal(expected, actual);
            Assert.All(expected, sums => Assert.Contains(sums, s => s != 0)); // not a comparison of zeros
        }
    }

    [Theory]
    [MemberData(nameof(Kernels))]
    public void OutputsEqualTheFloat64FakeQuantReference(Mxfp4KernelKind kind)
    {
        Assert.SkipUnless(Mxfp4DotKernels.IsSupported(kind), $"{kind} is not supported on this CPU");
        var rng = new Random(7 + (int)kind);
        var parallel = new ParallelRows(2);
        foreach ((int rows, int columns, bool perBlock) in new[] { (33, 64, false), (16, 172, true), (300, 1024, false) })
        {
            Mxfp4Matrix w = RandomWeights(rng, rows, columns);
            BlockTransform transform = RandomOrthogonal(rng, w.Blocks, perBlock);
            foreach (ScaleRule rule in Enum.GetValues<ScaleRule>())
            {
                var engine = new Mxfp4Linear(w, transform, rule, parallel, kind);
                var reference = new ReferenceMxfp4Linear(w, transform, rule);
                const int tokens = 5;
                float[] x = RandomActivations(rng, tokens * columns);
                var y = new float[tokens * rows];
                var r = new float[tokens * rows];
                engine.Forward(x, y, tokens);
                reference.Forward(x, r, tokens);
                Stories260KTests.AssertRelative(r, y, 1e-5);
            }
        }
    }

    [Theory]
    [MemberData(nameof(Kernels))]
    public unsafe void TwoRowKernelEqualsTheOneRowKernelBitForBit(Mxfp4KernelKind kind)
    {
        Assert.SkipUnless(Mxfp4DotKernels.IsSupported(kind), $"{kind} is not supported on this CPU");
        var rng = new Random(21);
        Mxfp4Matrix w = RandomWeights(rng, 2, 4096);
        var linear = new Mxfp4Linear(w, null, ScaleRule.Even, new ParallelRows(1), kind);
        Mxfp4Activations act = linear.QuantizeActivations(RandomActivations(rng, 4096), 1);
        (byte[] packed, byte[] scales) = linear.PaddedWeightBytes;
        int blocks = scales.Length / 2;
        fixed (byte* p = packed)
        fixed (byte* s = scales)
        fixed (sbyte* c = act.Codes)
        fixed (int* corr = act.Corrections)
        fixed (int* exp = act.Exponents)
        {
            Mxfp4DotKernels.Dot2(kind, p, p + (blocks * 16), s, s + blocks, c, corr, exp, blocks, out float a, out float b);
            Assert.Equal(Mxfp4DotKernels.Dot(kind, p, s, c, corr, exp, blocks), a);
            Assert.Equal(Mxfp4DotKernels.Dot(kind, p + (blocks * 16), s + blocks, c, corr, exp, blocks), b);
            Assert.NotEqual(0f, a);
        }
    }

    [Fact]
    public void NaNInputGivesNaNOutputNotNumbers()
    {
        var rng = new Random(3);
        Mxfp4Matrix w = RandomWeights(rng, 4, 64);
        var linear = new Mxfp4Linear(w, null, ScaleRule.Floor, new ParallelRows(1));
        float[] x = RandomActivations(rng, 64);
        x[10] = float.NaN;
        var y = new float[4];
        linear.Forward(x, y, 1);
        Assert.All(y, v => Assert.True(float.IsNaN(v)));
    }

    [Fact]
    public void VectorBlockTransformEqualsTheScalarLoopBitForBit()
    {
        var rng = new Random(12);
        BlockTransform t = RandomOrthogonal(rng, 1, false);
        for (int trial = 0; trial < 200; trial++)
        {
            float[] x = RandomActivations(rng, 32);
            var a = new float[32];
            var b = new float[32];
            BlockTransform.ApplyScalar(t.Matrix(0), x, a);
            BlockTransform.ApplyVector256(t.Matrix(0), x, b);
            Assert.Equal(a.Select(BitConverter.SingleToInt32Bits), b.Select(BitConverter.SingleToInt32Bits));
        }
    }

    [Fact]
    public void Bf16LinearEqualsFloat64ProductsOfTheRoundedWeights()
    {
        var rng = new Random(13);
        const int rows = 37, cols = 100;
        float[] w = RandomActivations(rng, rows * cols), x = RandomActivations(rng, 3 * cols);
        var linear = Bf16Linear.FromSingle(w, rows, cols, new ParallelRows(2));
        var y = new float[3 * rows];
        linear.Forward(x, y, 3);
        var reference = new float[3 * rows];
        for (int t = 0; t < 3; t++)
        {
            for (int o = 0; o < rows; o++)
            {
                double sum = 0;
                for (int i = 0; i < cols; i++)
                {
                    sum += (double)LocalMxfp4.Numerics.BFloat16.FromSingle(w[(o * cols) + i]).ToSingle() * x[(t * cols) + i];
                }

                reference[(t * rows) + o] = (float)sum;
            }
        }

        Stories260KTests.AssertRelative(reference, y, 1e-5);
    }

    [Fact]
    public void NaNWeightScaleIsRejected()
    {
        Mxfp4Matrix w = RandomWeights(new Random(6), 4, 64);
        w.Scales[5] = E8M0.NaN;
        var e = Assert.Throws<ArgumentException>(() => new Mxfp4Linear(w, null, ScaleRule.Floor, new ParallelRows(1)));
        Assert.Contains("row 2, block 1", e.Message);
    }

    [Fact]
    public void TransformMustCoverTheWeightBlocks()
    {
        var rng = new Random(4);
        Mxfp4Matrix w = RandomWeights(rng, 4, 128);
        Assert.Throws<ArgumentException>(() => new Mxfp4Linear(w, RandomOrthogonal(rng, 3, true), ScaleRule.Floor, new ParallelRows(1)));
    }
}
