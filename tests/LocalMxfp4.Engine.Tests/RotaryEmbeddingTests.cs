using LocalMxfp4.Engine.Layers;
using LocalMxfp4.Models.Configuration;

namespace LocalMxfp4.Engine.Tests;

public class RotaryEmbeddingTests
{
    private static LlamaConfig Llama31Like(RopeScaling? scaling) => new()
    {
        HiddenSize = 4096, IntermediateSize = 14336, LayerCount = 1, HeadCount = 32, KeyValueHeadCount = 8, HeadDim = 128,
        VocabularySize = 128256, MaxPositions = 131072, RmsNormEpsilon = 1e-5, RopeTheta = 500000, TieWordEmbeddings = false,
        RopeScaling = scaling,
    };

    [Fact]
    public void Llama3ScalingKeepsHighFrequenciesDividesLowOnesAndBlendsTheBand()
    {
        var plain = new RotaryEmbedding(Llama31Like(null));
        var scaled = new RotaryEmbedding(Llama31Like(new RopeScaling(8, 1, 4, 8192)));
        int kept = 0, divided = 0, blended = 0;
        for (int i = 0; i < 64; i++)
        {
            double f = plain.InverseFrequencies[i];
            double wavelength = 2 * Math.PI / f;
            double s = scaled.InverseFrequencies[i];
            if (wavelength < 8192 / 4.0)
            {
                Assert.Equal(f, s);
                kept++;
            }
            else if (wavelength > 8192 / 1.0)
            {
                Assert.Equal(f / 8, s, 1e-15);
                divided++;
            }
            else
            {
                Assert.InRange(s, f / 8, f);
                blended++;
            }
        }

        // Llama 3.1 8B has all three regimes.
        Assert.True(kept > 0 && divided > 0 && blended > 0, $"{kept}/{divided}/{blended}");
        Assert.Equal(1.0, plain.InverseFrequencies[0]);
        Assert.Equal(Math.Pow(500000, -2.0 * 63 / 128), plain.InverseFrequencies[63], 1e-18);
    }

    [Fact]
    public void RotatesHalvesAsRotateHalfDoesAndPreservesNorm()
    {
        var rope = new RotaryEmbedding(Llama31Like(null) with { HeadDim = 8, HeadCount = 1, KeyValueHeadCount = 1, HiddenSize = 8 });
        float[] head = [1, 2, 3, 4, 5, 6, 7, 8];
        var cos = new float[4];
        var sin = new float[4];
        rope.Angles(3, cos, sin);
        float[] rotated = (float[])head.Clone();
        rope.Apply(rotated, cos, sin);
        for (int i = 0; i < 4; i++)
        {
            // q·cos + rotate_half(q)·sin, rotate_half(q) = [−q2, q1].
            Assert.Equal((head[i] * cos[i]) - (head[i + 4] * sin[i]), rotated[i], 5);
            Assert.Equal((head[i + 4] * cos[i]) + (head[i] * sin[i]), rotated[i + 4], 5);
        }

        Assert.Equal(head.Sum(v => v * v), rotated.Sum(v => v * v), 3);
        Assert.Equal(Math.Cos(3.0), cos[0], 6);
    }
}
