using LocalMxfp4.Engine.Layers;
using LocalMxfp4.Numerics.Mxfp4;

namespace LocalMxfp4.Engine.Tests.W4A4;

/// <summary>
/// The register-tiled W4A4 products (batched steps, fused q|k|v and gate|up, the float-multiply factor path) against
/// the one-row, one-token dot product of the same kernel family (bit for bit) and the scalar reference (to rounding).
/// </summary>
public class Mxfp4GemmTests
{
    public static TheoryData<Mxfp4KernelKind, int> Cases()
    {
        var data = new TheoryData<Mxfp4KernelKind, int>();
        foreach (Mxfp4KernelKind k in new[] { Mxfp4KernelKind.Avx2, Mxfp4KernelKind.Avx512 })
        {
            if (Mxfp4DotKernels.IsSupported(k))
            {
                foreach (int tokens in new[] { 1, 2, 3, 4, 5, 7, 9 })
                {
                    data.Add(k, tokens);
                }
            }
        }

        return data;
    }

    /// <summary>Weights with zero blocks, tiny and huge scales in chosen rows, so both factor paths and the clamp run.</summary>
    private static Mxfp4Matrix Weights(Random rng, int rows, int columns, bool extreme)
    {
        Mxfp4Matrix m = Mxfp4LinearTests.RandomWeights(rng, rows, columns);
        int blocks = m.Blocks;
        for (int r = 0; r < rows; r += 7)
        {
            int b = rng.Next(blocks);
            m.Packed.AsSpan(((r * blocks) + b) * 16, 16).Clear();
            m.Scales[(r * blocks) + b] = 0; // an all-zero block, as the codec writes it
        }

        if (extreme)
        {
            m.Scales[rng.Next(blocks)] = 1;          // 2^-126: products underflow and are flushed
            m.Scales[blocks + rng.Next(blocks)] = 250; // 2^123: products overflow and are clamped
        }

        return m;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public unsafe void TiledProductsEqualTheOneTokenDotBitForBit(Mxfp4KernelKind kind, int tokens)
    {
        const int seed = 917;
        TestContext.Current.TestOutputHelper?.WriteLine($"seed {seed}");
        foreach (bool extreme in new[] { false, true })
        {
            var rng = new Random(seed + tokens + (extreme ? 100 : 0));
            int rows = 37, columns = 330; // odd rows (tails of every tile), 11 blocks padded to 12
            using var parallel = new ParallelRows(2);
            var linear = new Mxfp4Linear(Weights(rng, rows, columns, extreme), null, ScaleRule.Even, parallel, kind);
            float[] x = Mxfp4LinearTests.RandomActivations(rng, tokens * columns);
            x.AsSpan(columns, Math.Min(columns, x.Length - columns)).Clear(); // an all-zero activation row when tokens > 1
            var batched = new float[tokens * rows];
            linear.Forward(x, batched, tokens);

            var one = new float[rows];
            for (int t = 0; t < tokens; t++)
            {
                linear.Forward(x.AsSpan(t * columns, columns), one, 1);
                Mxfp4Activations act = linear.QuantizeActivations(x.AsSpan(t * columns, columns), 1);
                (byte[] packed, byte[] scales) = linear.PaddedWeightBytes;
                int blocks = act.Blocks;
                for (int r = 0; r < rows; r++)
                {
                    float dot;
                    fixed (byte* p = &packed[r * blocks * 16])
                    fixed (byte* s = &scales[r * blocks])
                    fixed (sbyte* c = act.Codes)
                    fixed (int* corr = act.Corrections)
                    fixed (int* e = act.Exponents)
                    {
                        dot = Mxfp4DotKernels.Dot(kind, p, s, c, corr, e, blocks);
                    }

                    Assert.Equal(BitConverter.SingleToInt32Bits(dot), BitConverter.SingleToInt32Bits(one[r]));
                    Assert.Equal(BitConverter.SingleToInt32Bits(dot), BitConverter.SingleToInt32Bits(batched[(t * rows) + r]));
                }
            }

            // And the scalar reference (a different summation order): equal to float rounding.
            var reference = new Mxfp4Linear(linear.Weights, null, ScaleRule.Even, parallel, Mxfp4KernelKind.Scalar);
            var expected = new float[tokens * rows];
            reference.Forward(x, expected, tokens);
            for (int i = 0; i < expected.Length; i++)
            {
                if (extreme && !(Math.Abs(expected[i]) < 1e30f))
                {
                    continue; // a 2^123 block overflows float32 in some summation orders and not in others
                }

                Assert.True(Math.Abs(expected[i] - batched[i]) <= 1e-5 * Math.Max(1, Math.Abs(expected[i])), $"[{i}] {batched[i]} vs {expected[i]}");
            }
        }
    }

    [Fact]
    public void FusedLayersEqualTheLayersAlone()
    {
        var rng = new Random(5);
        using var parallel = new ParallelRows(2);
        var layers = new[] { 64, 16, 16 }.Select(rows => new Mxfp4Linear(Mxfp4LinearTests.RandomWeights(rng, rows, 256), null, ScaleRule.Even, parallel)).ToArray();
        if (!Mxfp4Gemm.Supports(layers[0].Kernel))
        {
            return; // no tiled kernel on this CPU: LinearGroup runs the layers one by one
        }

        float[] x = Mxfp4LinearTests.RandomActivations(rng, 3 * 256);
        float[][] fused = layers.Select(l => new float[3 * l.OutputSize]).ToArray();
        LinearGroup.Forward(x, 3, layers[0], fused[0], layers[1], fused[1], layers[2], fused[2]);
        for (int i = 0; i < layers.Length; i++)
        {
            var alone = new float[3 * layers[i].OutputSize];
            layers[i].Forward(x, alone, 3);
            Assert.Equal(alone, fused[i]);
        }
    }
}
