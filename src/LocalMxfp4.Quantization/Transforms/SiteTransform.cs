using LocalMxfp4.Engine.Layers;
using LocalMxfp4.Models.Quantized;
using LocalMxfp4.Numerics.Mxfp4;

namespace LocalMxfp4.Quantization.Transforms;

/// <summary>
/// The transform state of one linear input ("site": q/k/v, o, gate/up or down of a layer). The activation is
/// divided by the site's online smoothing (only o_proj under GQA has one) and rotated block by block by R; the
/// weights, already multiplied by the smoothing offline, are rotated by the same R, so <c>x·Wᵀ</c> is unchanged.
/// DuQuant++ searches R on the first activation the site sees (q's search serves k and v, gate's serves up).
/// </summary>
public sealed class SiteTransform
{
    private readonly TransformMethod _method;
    private readonly int _steps;
    private readonly RotationIndexMode _mode;
    private readonly Random _rng;
    private double[]? _rotation;

    /// <summary>Creates the state of a site whose input has <paramref name="channels"/> channels.</summary>
    public SiteTransform(string name, int channels, TransformMethod method, float[]? onlineDivisor, int steps, RotationIndexMode mode, Random rng)
    {
        Name = name;
        Channels = channels;
        Blocks = Mxfp4Codec.BlockCount(channels);
        OnlineDivisor = onlineDivisor;
        _method = method;
        _steps = steps;
        _mode = mode;
        _rng = rng;
        _rotation = method switch
        {
            TransformMethod.Hadamard => OrthogonalMatrices.Hadamard(),
            _ => null,
        };
    }

    /// <summary>For progress and errors, e.g. "layer 3 o".</summary>
    public string Name { get; }

    /// <summary>Logical input width.</summary>
    public int Channels { get; }

    /// <summary>Blocks of 32 (padding included).</summary>
    public int Blocks { get; }

    /// <summary>Padded input width.</summary>
    public int PaddedChannels => Blocks * 32;

    /// <summary>Per-channel divisor applied online before the rotation (o_proj smoothing), or null.</summary>
    public float[]? OnlineDivisor { get; }

    /// <summary>The rotation, once known (null for RTN, and for DuQuant++ before its search).</summary>
    public double[]? Rotation => _rotation;

    /// <summary>Steps the greedy search kept, and the range it reached (for the summary).</summary>
    public DuQuantRotation.Result? SearchResult { get; private set; }

    /// <summary>True when the site has no transform at all (RTN without smoothing).</summary>
    public bool IsIdentity => _method == TransformMethod.Rtn && OnlineDivisor is null;

    /// <summary>Runs the greedy search on <paramref name="paddedInput"/> (already divided) if this site still needs a rotation.</summary>
    public void EnsureRotation(ReadOnlySpan<float> paddedInput)
    {
        if (_rotation is not null || _method != TransformMethod.DuQuant)
        {
            return;
        }

        SearchResult = DuQuantRotation.Search(paddedInput, PaddedChannels, _steps, _mode, _rng);
        _rotation = SearchResult.Rotation;
    }

    /// <summary>Zero-pads rows to whole blocks and applies the online divisor.</summary>
    public float[] Prepare(ReadOnlySpan<float> input, int rows)
    {
        var padded = new float[rows * PaddedChannels];
        for (int r = 0; r < rows; r++)
        {
            Span<float> dst = padded.AsSpan(r * PaddedChannels, Channels);
            input.Slice(r * Channels, Channels).CopyTo(dst);
            if (OnlineDivisor is not null)
            {
                System.Numerics.Tensors.TensorPrimitives.Divide(dst, OnlineDivisor, dst);
            }
        }

        return padded;
    }

    /// <summary>The engine's online transform for this site (divisor and rotation per block), or null for none.</summary>
    public InputTransform? ActivationTransform()
    {
        if (IsIdentity)
        {
            return null;
        }

        double[] r = _rotation ?? OrthogonalMatrices.Identity();
        if (OnlineDivisor is null)
        {
            return new InputTransform(ToFloat(r), Blocks);
        }

        // M_b = diag(1/s_b) · R: row i of R divided by s at channel b·32 + i (padding channels divide by 1).
        var all = new float[Blocks * 1024];
        for (int b = 0; b < Blocks; b++)
        {
            for (int i = 0; i < 32; i++)
            {
                int channel = (b * 32) + i;
                double d = channel < Channels ? OnlineDivisor[channel] : 1;
                for (int j = 0; j < 32; j++)
                {
                    all[(b * 1024) + (i * 32) + j] = (float)(r[(i * 32) + j] / d);
                }
            }
        }

        return new InputTransform(all, Blocks);
    }

    /// <summary>The rotation as the engine's <see cref="BlockTransform"/> (without the divisor), or null.</summary>
    public BlockTransform? RotationTransform() => _rotation is null ? null : new BlockTransform(ToFloat(_rotation), Blocks);

    /// <summary>
    /// A weight <c>[rows, Channels]</c> (smoothing already folded) padded to whole blocks and rotated block by block:
    /// <c>W_b ← W_b · R</c>, the transform that cancels the activation's.
    /// </summary>
    public float[] RotateWeight(ReadOnlySpan<float> weight, int rows)
    {
        float[] padded = new float[rows * PaddedChannels];
        for (int r = 0; r < rows; r++)
        {
            weight.Slice(r * Channels, Channels).CopyTo(padded.AsSpan(r * PaddedChannels));
        }

        BlockTransform? t = RotationTransform();
        if (t is null)
        {
            return padded;
        }

        var rotated = new float[32];
        for (int r = 0; r < rows; r++)
        {
            for (int b = 0; b < Blocks; b++)
            {
                Span<float> block = padded.AsSpan((r * PaddedChannels) + (b * 32), 32);
                t.Apply(b, block, rotated);
                rotated.CopyTo(block);
            }
        }

        return padded;
    }

    private static float[] ToFloat(double[] m) => Array.ConvertAll(m, v => (float)v);
}
