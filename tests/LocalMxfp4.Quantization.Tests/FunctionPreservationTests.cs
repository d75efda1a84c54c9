using LocalMxfp4.Engine.Contract;
using LocalMxfp4.Engine.Layers;
using LocalMxfp4.Engine.Loading;
using LocalMxfp4.Engine.Transformer;
using LocalMxfp4.Models.Quantized;
using LocalMxfp4.Quantization.Fixtures;

namespace LocalMxfp4.Quantization.Tests;

/// <summary>Smoothing and rotations are folded so that, before any rounding to MXFP4, the model computes the same function.</summary>
public class FunctionPreservationTests
{
    private static readonly int[] Tokens = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401];

    private static float[] Logits(LlamaWeights weights, ParallelRows parallel)
    {
        var engine = new CpuEngine(weights, parallel);
        using IInferenceSession session = engine.CreateSession(64);
        var logits = new float[Tokens.Length * weights.Config.VocabularySize];
        session.ForwardAll(Tokens, logits);
        return logits;
    }

    [Theory]
    [InlineData(TransformMethod.DuQuant)]
    [InlineData(TransformMethod.Hadamard)]
    public void TransformedFloatModelKeepsTheLogits(TransformMethod method)
    {
        var quantizer = new ModelQuantizer(QuantizerFixtures.Options(method) with { SmoothingAlpha = 0.6 });
        TransformedModel t = quantizer.Transform(QuantizerFixtures.Stories);
        using var parallel = new ParallelRows(2);
        float[] original = Logits(t.Original.ToWeights(parallel), parallel);
        float[] transformed = Logits(quantizer.TransformedFloatWeights(t, parallel), parallel);
        AssertClose(original, transformed, 2e-4);

        // And the transforms really are non-trivial: a rotation was searched or fixed at every site.
        Assert.All(t.Sites.Cast<Transforms.SiteTransform>(), s => Assert.NotNull(s.Rotation));
        Assert.Contains(t.Sites.Cast<Transforms.SiteTransform>(), s => s.OnlineDivisor is not null);
    }

    [Fact]
    public void OutlierInjectionKeepsTheFloatFunctionAndCreatesOutliers()
    {
        using var parallel = new ParallelRows(2);
        var quantizer = new ModelQuantizer(QuantizerFixtures.Options(TransformMethod.Rtn));
        FloatModelTensors model = quantizer.Transform(QuantizerFixtures.Stories).Original;
        float[] before = Logits(model.ToWeights(parallel), parallel);
        float normBefore = model.Layers[0].AttentionNorm.Max(MathF.Abs);
        IReadOnlyList<OutlierInjection.Injection> injected = OutlierInjection.Apply(model, seed: 1);
        Assert.Equal(5 * 4 * 3, injected.Count);
        Assert.All(injected, i => Assert.InRange(i.Alpha, 10, 100));
        Assert.True(model.Layers[0].AttentionNorm.Max(MathF.Abs) > 5 * normBefore);
        AssertClose(before, Logits(model.ToWeights(parallel), parallel), 1e-4);
    }

    internal static void AssertClose(float[] expected, float[] actual, double tolerance)
    {
        double scale = expected.Max(MathF.Abs);
        for (int i = 0; i < expected.Length; i++)
        {
            double error = Math.Abs(expected[i] - actual[i]) / Math.Max(Math.Abs(expected[i]), 1e-2 * scale);
            Assert.True(error <= tolerance, $"logit {i}: {expected[i]} vs {actual[i]} (relative {error:E2})");
        }
    }
}
