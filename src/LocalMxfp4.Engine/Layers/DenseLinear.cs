using System.Numerics.Tensors;

namespace LocalMxfp4.Engine.Layers;

/// <summary>A float32 weight matrix <c>[out, in]</c>, multiplied with <see cref="TensorPrimitives.Dot(ReadOnlySpan{float}, ReadOnlySpan{float})"/> row by row.</summary>
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
                    var wRow = new ReadOnlySpan<float>(w, offset + (o * inSize), inSize);
                    for (int t = 0; t < rows; t++)
                    {
                        y[(t * outSize) + o] = TensorPrimitives.Dot(wRow, new ReadOnlySpan<float>(x + (t * inSize), inSize));
                    }
                }
            });
        }
    }
}
