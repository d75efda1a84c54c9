using System.Runtime.Intrinsics;
using LocalMxfp4.Models.Configuration;

namespace LocalMxfp4.Engine.Layers;

/// <summary>
/// Rotary position embedding in Hugging Face's <c>rotate_half</c> layout: element i of a head pairs with element
/// i + headDim/2. Inverse frequencies (with LLaMA-3.1's llama3 scaling) and the angles are computed in float64.
/// </summary>
public sealed class RotaryEmbedding
{
    private readonly double[] _inverseFrequencies;

    /// <summary>Builds the frequency table of <paramref name="config"/>.</summary>
    public RotaryEmbedding(LlamaConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        HeadDim = config.HeadDim;
        int half = HeadDim / 2;
        _inverseFrequencies = new double[half];
        for (int i = 0; i < half; i++)
        {
            double f = 1.0 / Math.Pow(config.RopeTheta, 2.0 * i / HeadDim);
            _inverseFrequencies[i] = config.RopeScaling?.Scale(f) ?? f;
        }
    }

    /// <summary>Per-head width.</summary>
    public int HeadDim { get; }

    /// <summary>The (possibly scaled) inverse frequencies, one per rotated pair.</summary>
    public ReadOnlySpan<double> InverseFrequencies => _inverseFrequencies;

    /// <summary>Fills the cosine and sine of every pair's angle at <paramref name="position"/>.</summary>
    public void Angles(int position, Span<float> cos, Span<float> sin)
    {
        for (int i = 0; i < _inverseFrequencies.Length; i++)
        {
            double angle = position * _inverseFrequencies[i];
            cos[i] = (float)Math.Cos(angle);
            sin[i] = (float)Math.Sin(angle);
        }
    }

    /// <summary>Rotates every head of one token's q or k vector in place.</summary>
    public void Apply(Span<float> heads, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
    {
        int half = HeadDim / 2;
        for (int h = 0; h < heads.Length; h += HeadDim)
        {
            Span<float> head = heads.Slice(h, HeadDim);
            int i = 0;
            if (Vector256.IsHardwareAccelerated)
            {
                // The same separate multiplies and subtractions as the scalar loop, eight pairs at a time.
                for (; i + 8 <= half; i += 8)
                {
                    var a = Vector256.Create(head.Slice(i, 8));
                    var b = Vector256.Create(head.Slice(i + half, 8));
                    var c = Vector256.Create(cos.Slice(i, 8));
                    var s = Vector256.Create(sin.Slice(i, 8));
                    ((a * c) - (b * s)).CopyTo(head.Slice(i, 8));
                    ((b * c) + (a * s)).CopyTo(head.Slice(i + half, 8));
                }
            }

            for (; i < half; i++)
            {
                float a = head[i], b = head[i + half];
                head[i] = (a * cos[i]) - (b * sin[i]);
                head[i + half] = (b * cos[i]) + (a * sin[i]);
            }
        }
    }
}
