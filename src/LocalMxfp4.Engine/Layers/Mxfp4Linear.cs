using LocalMxfp4.Numerics.Mxfp4;

namespace LocalMxfp4.Engine.Layers;

/// <summary>
/// A W4A4 linear layer: the input's 32-element blocks go through the layer's online <see cref="BlockTransform"/>
/// (if any), are quantized to MXFP4 with the model's scale rule, and meet the MXFP4 weights in exact integer block
/// dot products (<see cref="Mxfp4DotKernels"/>). Weight rows are kept padded to a multiple of 4 blocks so every
/// kernel reads whole groups; the padding blocks are zero and contribute nothing.
/// </summary>
public sealed unsafe class Mxfp4Linear : ILinear
{
    private const int RowPadBlocks = 4;

    private readonly byte[] _packed;
    private readonly byte[] _scales;
    private readonly int _paddedBlocks;
    private readonly ParallelRows _parallel;

    /// <summary>Wraps <paramref name="weights"/> with an optional online <paramref name="transform"/>.</summary>
    /// <param name="weights">MXFP4 weights <c>[out, in]</c>; their scale bytes must not be NaN (0xFF).</param>
    /// <param name="transform">The input transform, covering the weights' blocks, or null.</param>
    /// <param name="activationRule">Scale rule for the online activation quantization (the model's rule).</param>
    /// <param name="parallel">Threads for the output rows.</param>
    /// <param name="kernel">Kernel to use; null picks the fastest this CPU supports.</param>
    public Mxfp4Linear(Mxfp4Matrix weights, BlockTransform? transform, ScaleRule activationRule, ParallelRows parallel, Mxfp4KernelKind? kernel = null)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(parallel);
        if (transform is not null && transform.Blocks != weights.Blocks)
        {
            throw new ArgumentException($"The input transform covers {transform.Blocks} blocks but the weights have {weights.Blocks}.", nameof(transform));
        }

        int nan = Array.IndexOf(weights.Scales, E8M0.NaN);
        if (nan >= 0)
        {
            // The kernels clamp the scale exponent, so a NaN scale would silently become a huge finite weight.
            throw new ArgumentException($"Weight scale byte 0xFF (NaN) at row {nan / weights.Blocks}, block {nan % weights.Blocks}; MXFP4 weights must have finite scales.", nameof(weights));
        }

        Kernel = kernel ?? Mxfp4DotKernels.Best;
        if (!Mxfp4DotKernels.IsSupported(Kernel))
        {
            throw new PlatformNotSupportedException($"The {Kernel} MXFP4 kernel needs instructions this CPU lacks.");
        }

        Weights = weights;
        Transform = transform;
        ActivationRule = activationRule;
        _parallel = parallel;
        _paddedBlocks = (weights.Blocks + RowPadBlocks - 1) / RowPadBlocks * RowPadBlocks;
        _packed = new byte[(long)weights.Rows * _paddedBlocks * 16];
        _scales = new byte[(long)weights.Rows * _paddedBlocks];
        _scales.AsSpan().Fill(NeutralScale);
        int ewMin = 255, ewMax = 0;
        for (int r = 0; r < weights.Rows; r++)
        {
            weights.Packed.AsSpan(r * weights.Blocks * 16, weights.Blocks * 16).CopyTo(_packed.AsSpan(r * _paddedBlocks * 16));
            for (int b = 0; b < weights.Blocks; b++)
            {
                byte scale = weights.Scales[(r * weights.Blocks) + b];
                // A block of zeros contributes an exact 0 whatever its scale: give it a neutral one, so the scale range
                // below describes only blocks that can produce something (padding blocks are neutral too).
                if (scale == 0 && IsZeroBlock(weights.Packed.AsSpan(((r * weights.Blocks) + b) * 16, 16)))
                {
                    scale = NeutralScale;
                }

                _scales[(r * _paddedBlocks) + b] = scale;
                ewMin = Math.Min(ewMin, scale);
                ewMax = Math.Max(ewMax, scale);
            }
        }

        _minScale = Math.Min(ewMin, NeutralScale);
        _maxScale = Math.Max(ewMax, NeutralScale);
    }

    /// <summary>The scale byte of padding and all-zero weight blocks (2^0): their products are exactly 0 under any scale.</summary>
    private const byte NeutralScale = 127;

    private readonly int _minScale;
    private readonly int _maxScale;

    private static bool IsZeroBlock(ReadOnlySpan<byte> packed)
    {
        foreach (byte b in packed)
        {
            // Codes 0 and 8 are +0 and −0.
            if ((b & 0x77) != 0)
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>
    /// Whether every block product of activation row <paramref name="token"/> with these weights is a normal float
    /// (<c>1 ≤ ea + ew − 129 ≤ 254</c>): then the kernels may form the factor as a product of two floats instead of the
    /// clamped exponent sum, with identical bits.
    /// </summary>
    internal bool FactorsAreNormal(Mxfp4Activations act, int token) =>
        act.MaxScale[token] == 0 || (act.MinScale[token] + _minScale - 129 >= 1 && act.MaxScale[token] + _maxScale - 129 <= 254);

    /// <summary>The fastest kernel this CPU supports.</summary>
    public static Mxfp4KernelKind BestKernel => Mxfp4DotKernels.Best;

    /// <summary>The planes the kernels stream (rows padded to whole groups of blocks), for benchmarks.</summary>
    public (byte[] Packed, byte[] Scales) PaddedWeightBytes => (_packed, _scales);

    /// <summary>The weights as given.</summary>
    public Mxfp4Matrix Weights { get; }

    /// <summary>The online input transform, or null.</summary>
    public BlockTransform? Transform { get; }

    /// <summary>The activation scale rule.</summary>
    public ScaleRule ActivationRule { get; }

    /// <summary>The kernel in use.</summary>
    public Mxfp4KernelKind Kernel { get; }

    /// <inheritdoc />
    public int InputSize => Weights.Columns;

    /// <inheritdoc />
    public int OutputSize => Weights.Rows;

    /// <inheritdoc />
    public void Forward(ReadOnlySpan<float> input, Span<float> output, int rows)
    {
        if (input.Length < rows * InputSize)
        {
            throw new ArgumentException($"Expected [{rows}, {InputSize}] in.", nameof(input));
        }

        Forward(QuantizeActivations(input, rows), output, rows);
    }

    /// <summary>True when <paramref name="other"/> quantizes its input exactly as this layer does (same transform object, rule, kernel, width).</summary>
    public bool SharesInputWith(Mxfp4Linear other) =>
        other is not null && ReferenceEquals(Transform, other.Transform) && ActivationRule == other.ActivationRule
        && Kernel == other.Kernel && InputSize == other.InputSize && _paddedBlocks == other._paddedBlocks;

    /// <summary>Multiplies already-quantized activations (from this layer or one it <see cref="SharesInputWith"/>).</summary>
    internal void Forward(Mxfp4Activations act, Span<float> output, int rows)
    {
        int outSize = OutputSize;
        if (output.Length < rows * outSize)
        {
            throw new ArgumentException($"Expected [{rows}, {outSize}] out.", nameof(output));
        }

        if (act.HasNonFinite)
        {
            // A NaN or infinity upstream makes the whole product meaningless; say so instead of returning numbers.
            output[..(rows * outSize)].Fill(float.NaN);
            return;
        }

        if (Mxfp4Gemm.Supports(Kernel))
        {
            fixed (float* y = output)
            {
                ForwardFused(act, rows, [this], [(nint)y]);
            }

            return;
        }

        fixed (byte* packed = _packed)
        fixed (byte* scales = _scales)
        fixed (sbyte* codes = act.Codes)
        fixed (int* corrections = act.Corrections)
        fixed (int* exponents = act.Exponents)
        fixed (float* outPtr = output)
        {
            byte* p = packed;
            byte* s = scales;
            sbyte* c = codes;
            int* corr = corrections;
            int* exp = exponents;
            float* y = outPtr;
            int blocks = _paddedBlocks;
            Mxfp4KernelKind kernel = Kernel;
            _parallel.For(outSize, (long)rows * blocks * 32, (start, end) =>
            {
                int o = start;
                for (; o + 1 < end; o += 2)
                {
                    byte* packed0 = p + ((long)o * blocks * 16);
                    byte* scales0 = s + ((long)o * blocks);
                    for (int t = 0; t < rows; t++)
                    {
                        Mxfp4DotKernels.Dot2(
                            kernel, packed0, packed0 + (blocks * 16), scales0, scales0 + blocks, c + (t * blocks * 32), corr + (t * blocks * 4), exp + (t * blocks * 4), blocks,
                            out y[(t * outSize) + o], out y[(t * outSize) + o + 1]);
                    }
                }

                for (; o < end; o++)
                {
                    byte* rowPacked = p + ((long)o * blocks * 16);
                    byte* rowScales = s + ((long)o * blocks);
                    for (int t = 0; t < rows; t++)
                    {
                        y[(t * outSize) + o] = Mxfp4DotKernels.Dot(
                            kernel, rowPacked, rowScales, c + (t * blocks * 32), corr + (t * blocks * 4), exp + (t * blocks * 4), blocks);
                    }
                }
            });
        }
    }

    /// <summary>
    /// Several layers over the same quantized activations (q|k|v, gate|up) in one fork/join: their output rows are
    /// treated as one range split over the threads, so a short matrix (k, v) does not pay a hand-off of its own.
    /// <paramref name="outputs"/> are pinned <c>[rows, OutputSize]</c> buffers, one per layer.
    /// </summary>
    internal static void ForwardFused(Mxfp4Activations act, int rows, Mxfp4Linear[] layers, nint[] outputs)
    {
        Mxfp4Linear first = layers[0];
        int total = 0;
        foreach (Mxfp4Linear l in layers)
        {
            if (!first.SharesInputWith(l) || !Mxfp4Gemm.Supports(l.Kernel))
            {
                throw new ArgumentException("Fused layers must share their input quantization and have a tiled kernel.", nameof(layers));
            }

            total += l.OutputSize;
        }

        if (act.HasNonFinite)
        {
            for (int i = 0; i < layers.Length; i++)
            {
                new Span<float>((float*)outputs[i], rows * layers[i].OutputSize).Fill(float.NaN);
            }

            return;
        }

        int blocks = first._paddedBlocks;
        var normal = new bool[layers.Length * rows];
        for (int i = 0; i < layers.Length; i++)
        {
            for (int t = 0; t < rows; t++)
            {
                normal[(i * rows) + t] = layers[i].FactorsAreNormal(act, t);
            }
        }

        fixed (sbyte* codes = act.Codes)
        fixed (int* corrections = act.Corrections)
        fixed (int* exponents = act.Exponents)
        fixed (float* factors = act.Factors)
        {
            sbyte* c = codes;
            int* corr = corrections, exp = exponents;
            float* fac = factors;
            first._parallel.For(total, (long)rows * blocks * 32, (start, end) =>
            {
                int offset = 0;
                for (int i = 0; i < layers.Length && offset < end; i++)
                {
                    Mxfp4Linear l = layers[i];
                    int from = Math.Max(start, offset) - offset, to = Math.Min(end, offset + l.OutputSize) - offset;
                    if (from < to)
                    {
                        fixed (byte* packed = l._packed)
                        fixed (byte* scales = l._scales)
                        fixed (bool* fast = &normal[i * rows])
                        {
                            Mxfp4Gemm.Run(l.Kernel, packed, scales, blocks, from, to, c, corr, exp, fac, fast, rows, (float*)outputs[i], l.OutputSize);
                        }
                    }

                    offset += l.OutputSize;
                }
            });
        }
    }

    /// <summary>Quantizes <paramref name="rows"/> input rows into the kernel's activation layout.</summary>
    internal Mxfp4Activations QuantizeActivations(ReadOnlySpan<float> input, int rows)
    {
        Mxfp4Activations act = Mxfp4Activations.Rent(rows, _paddedBlocks, Mxfp4DotKernels.GroupBlocks(Kernel));
        act.QuantizeAll(input[..(rows * InputSize)], InputSize, Transform, ActivationRule, _parallel);
        return act;
    }

    /// <summary>The exact integer block sums of weight row <paramref name="row"/> against activation row <paramref name="token"/>.</summary>
    internal int[] BlockSums(Mxfp4Activations act, int row, int token)
    {
        var sums = new int[_paddedBlocks];
        fixed (byte* packed = _packed)
        fixed (sbyte* codes = act.Codes)
        fixed (int* corrections = act.Corrections)
        fixed (int* result = sums)
        {
            Mxfp4DotKernels.BlockSums(Kernel, packed + ((long)row * _paddedBlocks * 16), codes + (token * _paddedBlocks * 32), corrections + (token * _paddedBlocks * 4), _paddedBlocks, result);
        }

        return sums[..Weights.Blocks];
    }
}
