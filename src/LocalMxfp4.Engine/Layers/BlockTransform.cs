using System.Runtime.Intrinsics;
namespace LocalMxfp4.Engine.Layers;

/// <summary>
/// The online transform of a linear layer's input, applied to every 32-element block before MXFP4 quantization:
/// <c>x_b ← x_b · M_b</c>. DuQuant++ uses one orthogonal 32×32 rotation shared by all blocks; the o_proj input,
/// whose smoothing cannot be folded into v_proj under GQA, uses one matrix per block (diag(1/s_b) · R). The weights
/// were multiplied by the inverse offline, so the layer's float function is unchanged.
/// </summary>
public sealed class BlockTransform
{
    /// <summary>Rows and columns of each block matrix.</summary>
    public const int Size = 32;

    private readonly float[] _matrices;

    /// <summary>
    /// Wraps <paramref name="matrices"/>: either one row-major 32×32 matrix (shared by every block) or
    /// <paramref name="blocks"/> of them, <c>[blocks, 32, 32]</c>.
    /// </summary>
    public BlockTransform(float[] matrices, int blocks)
    {
        ArgumentNullException.ThrowIfNull(matrices);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(blocks);
        if (matrices.Length != Size * Size && matrices.LongLength != (long)blocks * Size * Size)
        {
            throw new ArgumentException($"A block transform is one 32×32 matrix or {blocks} of them; got {matrices.Length} floats.", nameof(matrices));
        }

        _matrices = matrices;
        Blocks = blocks;
        IsShared = matrices.Length == Size * Size;
    }

    /// <summary>Blocks of the input this transform covers.</summary>
    public int Blocks { get; }

    /// <summary>True when every block uses the same matrix.</summary>
    public bool IsShared { get; }

    /// <summary>The matrices as stored (<c>[32, 32]</c> or <c>[blocks, 32, 32]</c>).</summary>
    public ReadOnlySpan<float> Matrices => _matrices;

    /// <summary>The matrix of block <paramref name="block"/>.</summary>
    public ReadOnlySpan<float> Matrix(int block) => IsShared ? _matrices : _matrices.AsSpan(block * Size * Size, Size * Size);

    /// <summary>
    /// Transforms one 32-element block, <c>y = x · M_b</c>, accumulating in float64 in a fixed order and rounding once.
    /// Each output is <c>((x₀·m₀ⱼ) + x₁·m₁ⱼ) + …</c> with separate multiplies and adds (never fused), so the vector
    /// and scalar paths — and any other backend that follows this rule — produce the same bits, and the MXFP4
    /// quantization that follows is reproducible.
    /// </summary>
    public void Apply(int block, ReadOnlySpan<float> x, Span<float> y)
    {
        ReadOnlySpan<float> m = Matrix(block);
        if (Vector256.IsHardwareAccelerated)
        {
            ApplyVector256(m, x, y);
        }
        else
        {
            ApplyScalar(m, x, y);
        }
    }

    /// <summary>The plain loop the vector path must equal bit for bit.</summary>
    internal static void ApplyScalar(ReadOnlySpan<float> m, ReadOnlySpan<float> x, Span<float> y)
    {
        Span<double> sum = stackalloc double[Size];
        sum.Clear();
        for (int i = 0; i < Size; i++)
        {
            double xi = x[i];
            ReadOnlySpan<float> row = m.Slice(i * Size, Size);
            for (int j = 0; j < Size; j++)
            {
                sum[j] += xi * row[j];
            }
        }

        for (int j = 0; j < Size; j++)
        {
            y[j] = (float)sum[j];
        }
    }

    internal static void ApplyVector256(ReadOnlySpan<float> m, ReadOnlySpan<float> x, Span<float> y)
    {
        var s0 = Vector256<double>.Zero;
        var s1 = s0;
        var s2 = s0;
        var s3 = s0;
        var s4 = s0;
        var s5 = s0;
        var s6 = s0;
        var s7 = s0;
        for (int i = 0; i < Size; i++)
        {
            var xi = Vector256.Create((double)x[i]);
            ReadOnlySpan<float> row = m.Slice(i * Size, Size);
            (var a0, var a1) = Vector256.Widen(Vector256.Create(row[..8]));
            (var a2, var a3) = Vector256.Widen(Vector256.Create(row.Slice(8, 8)));
            (var a4, var a5) = Vector256.Widen(Vector256.Create(row.Slice(16, 8)));
            (var a6, var a7) = Vector256.Widen(Vector256.Create(row.Slice(24, 8)));
            s0 += xi * a0;
            s1 += xi * a1;
            s2 += xi * a2;
            s3 += xi * a3;
            s4 += xi * a4;
            s5 += xi * a5;
            s6 += xi * a6;
            s7 += xi * a7;
        }

        Vector256.Narrow(s0, s1).CopyTo(y);
        Vector256.Narrow(s2, s3).CopyTo(y[8..]);
        Vector256.Narrow(s4, s5).CopyTo(y[16..]);
        Vector256.Narrow(s6, s7).CopyTo(y[24..]);
    }
}
