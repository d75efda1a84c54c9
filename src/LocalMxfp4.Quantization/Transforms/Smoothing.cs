namespace LocalMxfp4.Quantization.Transforms;

/// <summary>
/// SmoothQuant-style per-channel smoothing (spec §3.4): <c>s_j = max(a_j^α / w_j^(1−α), 0.01)</c> with
/// <c>a_j = max(max|x_j|, 1e-5)</c> over calibration tokens and <c>w_j = max(max_rows |W[:, j]|, 1e-5)</c> of the
/// reference weight. Dividing the activation by s and multiplying the weight columns by s keeps the product and
/// moves outlier magnitude from activations to weights.
/// </summary>
public static class Smoothing
{
    /// <summary>The smoothing factors of one linear input.</summary>
    /// <param name="activationMax">Per input channel, max |x| over the calibration tokens.</param>
    /// <param name="referenceWeight">The reference weight <c>[rows, channels]</c> row-major.</param>
    /// <param name="alpha">Migration strength α in [0, 1].</param>
    public static float[] Factors(ReadOnlySpan<float> activationMax, ReadOnlySpan<float> referenceWeight, double alpha)
    {
        int channels = activationMax.Length;
        int rows = referenceWeight.Length / channels;
        var wmax = new double[channels];
        for (int r = 0; r < rows; r++)
        {
            ReadOnlySpan<float> row = referenceWeight.Slice(r * channels, channels);
            for (int j = 0; j < channels; j++)
            {
                wmax[j] = Math.Max(wmax[j], Math.Abs(row[j]));
            }
        }

        var s = new float[channels];
        for (int j = 0; j < channels; j++)
        {
            double a = Math.Max(activationMax[j], 1e-5), w = Math.Max(wmax[j], 1e-5);
            s[j] = (float)Math.Max(Math.Pow(a, alpha) / Math.Pow(w, 1 - alpha), 1e-2);
        }

        return s;
    }

    /// <summary>Multiplies column j of a row-major <c>[rows, s.Length]</c> matrix by <c>s[j]</c>.</summary>
    public static void ScaleColumns(float[] matrix, ReadOnlySpan<float> s)
    {
        int channels = s.Length;
        for (int r = 0; r < matrix.Length / channels; r++)
        {
            System.Numerics.Tensors.TensorPrimitives.Multiply(matrix.AsSpan(r * channels, channels), s, matrix.AsSpan(r * channels, channels));
        }
    }

    /// <summary>Divides row i of a row-major <c>[s.Length, columns]</c> matrix by <c>s[i]</c>.</summary>
    public static void DivideRows(float[] matrix, ReadOnlySpan<float> s)
    {
        int columns = matrix.Length / s.Length;
        for (int i = 0; i < s.Length; i++)
        {
            System.Numerics.Tensors.TensorPrimitives.Divide(matrix.AsSpan(i * columns, columns), s[i], matrix.AsSpan(i * columns, columns));
        }
    }

    /// <summary>Divides a vector (a norm gain) elementwise by <paramref name="s"/>.</summary>
    public static void Divide(float[] vector, ReadOnlySpan<float> s) =>
        System.Numerics.Tensors.TensorPrimitives.Divide(vector, s, vector);
}
