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
    /// Transforms one 32-element block, <c>y = x · M_b</c>, accumulating in float64 in a fixed order and rounding once:
    /// the result does not depend on SIMD width, so the quantization that follows is reproducible bit for bit.
    /// </summary>
    public void Apply(int block, ReadOnlySpan<float> x, Span<float> y)
    {
        ReadOnlySpan<float> m = Matrix(block);
        Span<double> sum = stackalloc double[Size];
        sum.Clear();
        for (int i = 0; i < Size; i++)
        {
            double xi = x[i];
            if (xi == 0)
            {
                continue;
            }

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
}
