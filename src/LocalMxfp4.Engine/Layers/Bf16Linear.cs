using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using LocalMxfp4.Numerics;

namespace LocalMxfp4.Engine.Layers;

/// <summary>
/// A bfloat16 weight matrix <c>[out, in]</c> with float32 activations and accumulation. W4A4 models keep the lm_head
/// in 16 bits (it is the largest single matrix of a LLaMA-3 — 128,256 rows); streaming it as bfloat16 halves its
/// share of the per-token memory traffic compared with float32. Widening bfloat16 is a 16-bit shift, so products
/// are exact float32 products.
/// </summary>
public sealed unsafe class Bf16Linear : ILinear
{
    private readonly ushort[] _weight;
    private readonly ParallelRows _parallel;

    /// <summary>Wraps bfloat16 bit patterns <paramref name="weight"/> (not copied), row-major <c>[outputSize, inputSize]</c>.</summary>
    public Bf16Linear(ushort[] weight, int outputSize, int inputSize, ParallelRows parallel)
    {
        ArgumentNullException.ThrowIfNull(weight);
        ArgumentNullException.ThrowIfNull(parallel);
        if (weight.LongLength != (long)outputSize * inputSize)
        {
            throw new ArgumentException($"A {outputSize}×{inputSize} matrix needs {(long)outputSize * inputSize} values, got {weight.LongLength}.", nameof(weight));
        }

        _weight = weight;
        _parallel = parallel;
        OutputSize = outputSize;
        InputSize = inputSize;
    }

    /// <inheritdoc />
    public int InputSize { get; }

    /// <inheritdoc />
    public int OutputSize { get; }

    /// <summary>Rounds float32 weights to bfloat16 (exact when they came from a BF16 file).</summary>
    public static Bf16Linear FromSingle(ReadOnlySpan<float> weight, int outputSize, int inputSize, ParallelRows parallel)
    {
        var bits = new ushort[weight.Length];
        BFloat16.FromSingle(weight, bits);
        return new Bf16Linear(bits, outputSize, inputSize, parallel);
    }

    /// <inheritdoc />
    public void Forward(ReadOnlySpan<float> input, Span<float> output, int rows)
    {
        int inSize = InputSize, outSize = OutputSize;
        if (input.Length < rows * inSize || output.Length < rows * outSize)
        {
            throw new ArgumentException($"Expected [{rows}, {inSize}] in and [{rows}, {outSize}] out.");
        }

        fixed (ushort* w = _weight)
        fixed (float* x = input)
        fixed (float* y = output)
        {
            ushort* wp = w;
            float* xp = x, yp = y;
            _parallel.For(outSize, (long)rows * inSize, (start, end) =>
            {
                for (int o = start; o < end; o++)
                {
                    for (int t = 0; t < rows; t++)
                    {
                        yp[(t * outSize) + o] = Dot(wp + ((long)o * inSize), xp + (t * inSize), inSize);
                    }
                }
            });
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float Dot(ushort* w, float* x, int n)
    {
        int i = 0;
        float sum = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> acc0 = Vector256<float>.Zero, acc1 = Vector256<float>.Zero;
            for (; i <= n - 16; i += 16)
            {
                (Vector256<uint> lo, Vector256<uint> hi) = Vector256.Widen(Vector256.Load(w + i));
                acc0 += (lo << 16).AsSingle() * Vector256.Load(x + i);
                acc1 += (hi << 16).AsSingle() * Vector256.Load(x + i + 8);
            }

            sum = Vector256.Sum(acc0 + acc1);
        }

        for (; i < n; i++)
        {
            sum += BitConverter.Int32BitsToSingle(w[i] << 16) * x[i];
        }

        return sum;
    }
}
