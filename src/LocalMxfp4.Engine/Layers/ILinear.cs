namespace LocalMxfp4.Engine.Layers;

/// <summary>
/// A bias-free linear layer <c>y = x · Wᵀ</c> over a batch of rows. This is the seam where number formats differ:
/// the float reference multiplies float32 weights, the W4A4 path quantizes the activation blocks and runs exact
/// integer block dot products; the transformer around it is the same.
/// </summary>
public interface ILinear
{
    /// <summary>Input width (the reduction dimension).</summary>
    int InputSize { get; }

    /// <summary>Output width.</summary>
    int OutputSize { get; }

    /// <summary>Multiplies <paramref name="rows"/> input rows <c>[rows, InputSize]</c> into <c>[rows, OutputSize]</c>.</summary>
    void Forward(ReadOnlySpan<float> input, Span<float> output, int rows);
}
