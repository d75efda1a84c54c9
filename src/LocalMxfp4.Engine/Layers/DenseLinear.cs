using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace LocalMxfp4.Engine.Layers;

/// <summary>
/// A float32 weight matrix <c>[out, in]</c>, multiplied row by row with a dot product whose summation order depends
/// only on the length (<c>TensorPrimitives.Dot</c> aligns to the input's address, so the same row at another offset of
/// a batch buffer could round differently — and batched steps must equal solo ones bit for bit).
/// </summary>
public sealed class DenseLinear : ILinear
{
    private readonly float[] _weight;
    private readonly int _weightOffset;
    private readonly ParallelRows _parallel;

    /// <summary>Wraps <paramref name="weight"/> (not copied) as an <c>[outputSize, inputSize]</c> matrix starting at <paramref name="offset"/>.</summary>
    public DenseLinear(float[] weight, int outputSize, int inputSize, ParallelRows parallel, int offset = 0)
    {
        ArgumentNullException.ThrowIfNull(weight);
        if (weight.Length - offset < (long)outputSize * inputSize)
        {
            throw new ArgumentException($"A {outputSize}×{inputSize} matrix needs {(long)outputSize * inputSize} floats, got {weight.Length - offset}.", nameof(weight));
        }

        _weight = weight;
        _weightOffset = offset;
        _parallel = parallel;
        OutputSize = outputSize;
        InputSize = inputSize;
    }

    /// <inheritdoc />
    public int InputSize { get; }

    /// <inheritdoc />
    public int OutputSize { get; }

    /// <summary>The weight row of output <paramref name="row"/>.</summary>
    public ReadOnlySpan<float> Row(int row) => _weight.AsSpan(_weightOffset + (row * InputSize), InputSize);

    /// <inheritdoc />
    public unsafe void Forward(ReadOnlySpan<float> input, Span<float> output, int rows)
    {
        int inSize = InputSize, outSize = OutputSize;
        if (input.Length < rows * inSize || output.Length < rows * outSize)
        {
            throw new ArgumentException($"Expected [{rows}, {inSize}] in and [{rows}, {outSize}] out.");
        }

        fixed (float* inPtr = input)
        fixed (float* outPtr = output)
        {
            float* x = inPtr, y = outPtr;
            float[] w = _weight;
            int offset = _weightOffset;
            _parallel.For(outSize, (long)rows * inSize, (start, end) =>
            {
                for (int o = start; o < end; o++)
                {
                    fixed (float* wRow = &w[offset + (o * inSize)])
                    {
                        for (int t = 0; t < rows; t++)
                        {
                            y[(t * outSize) + o] = Dot(wRow, x + (t * inSize), inSize);
                        }
                    }
                }
            });
        }
    }

    /// <summary>Σ a·b in a fixed order: four 8-lane accumulators over whole groups of 32, then a scalar tail.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static unsafe float Dot(float* a, float* b, int n)
    {
        int i = 0;
        float sum = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> s0 = Vector256<float>.Zero, s1 = s0, s2 = s0, s3 = s0;
            for (; i + 32 <= n; i += 32)
            {
                s0 = Vector256.FusedMultiplyAdd(Vector256.Load(a + i), Vector256.Load(b + i), s0);
                s1 = Vector256.FusedMultiplyAdd(Vector256.Load(a + i + 8), Vector256.Load(b + i + 8), s1);
                s2 = Vector256.FusedMultiplyAdd(Vector256.Load(a + i + 16), Vector256.Load(b + i + 16), s2);
                s3 = Vector256.FusedMultiplyAdd(Vector256.Load(a + i + 24), Vector256.Load(b + i + 24), s3);
            }

            for (; i + 8 <= n; i += 8)
            {
                s0 = Vector256.FusedMultiplyAdd(Vector256.Load(a + i), Vector256.Load(b + i), s0);
            }

            sum = Vector256.Sum((s0 + s1) + (s2 + s3));
        }

        for (; i < n; i++)
        {
            sum = MathF.FusedMultiplyAdd(a[i], b[i], sum);
        }

        return sum;
    }
}
