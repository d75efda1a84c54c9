using LocalMxfp4.Numerics.Mxfp4;

namespace LocalMxfp4.Quantization.Gptq;

/// <summary>
/// GPTQ for MXFP4 with static E8M0 scales (spec §3.9, "DuQuant++*"): columns are quantized in order and each one's
/// rounding error is spread over the columns not yet quantized through the upper Cholesky factor of <c>H⁻¹</c>.
/// Scales are fixed beforehand from the rotated, unquantized weights, so every block decodes as plain MXFP4.
/// Damping adds 1 % of the mean diagonal; dead inputs (zero diagonal) get weight 0. Rows are independent given
/// <c>H⁻¹</c>, so they are processed one by one in parallel — the same arithmetic as the reference's 128-column
/// lazy batches, which only reorganise the updates for memory traffic.
/// </summary>
public static class GptqQuantizer
{
    /// <summary>Quantizes <c>[rows, width]</c> weights (width = padded input) against <paramref name="hessian"/>.</summary>
    public static Mxfp4Matrix Quantize(float[] weights, int rows, int columns, HessianAccumulator hessian, ScaleRule rule, double damping = 0.01)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(hessian);
        int width = hessian.Width, blocks = width / 32;
        if (weights.Length != rows * width)
        {
            throw new ArgumentException($"Weights must be [{rows}, {width}].", nameof(weights));
        }

        double[] h = Symmetric(hessian);
        var dead = new bool[width];
        double meanDiagonal = 0;
        for (int i = 0; i < width; i++)
        {
            if (h[(i * width) + i] == 0)
            {
                dead[i] = true;
                h[(i * width) + i] = 1;
            }

            meanDiagonal += h[(i * width) + i];
        }

        meanDiagonal /= width;
        for (int i = 0; i < width; i++)
        {
            h[(i * width) + i] += damping * meanDiagonal;
        }

        double[] u = UpperCholeskyOfInverse(h, width);
        var packed = new byte[rows * blocks * 16];
        var scales = new byte[rows * blocks];
        Parallel.For(0, rows, r =>
        {
            var w = new double[width];
            for (int i = 0; i < width; i++)
            {
                w[i] = dead[i] ? 0 : weights[(r * width) + i];
            }

            // Static scales from the unquantized rotated row.
            for (int b = 0; b < blocks; b++)
            {
                float amax = 0;
                for (int i = 0; i < 32; i++)
                {
                    amax = Math.Max(amax, (float)Math.Abs(w[(b * 32) + i]));
                }

                scales[(r * blocks) + b] = E8M0.FromAmax(amax, rule);
            }

            for (int i = 0; i < width; i++)
            {
                byte scale = scales[(r * blocks) + (i / 32)];
                int code = E2M1.Encode((float)w[i] * E8M0.InverseScale(scale));
                double q = E2M1.Decode(code) * E8M0.DecodeDouble(scale);
                int byteIndex = (r * blocks * 16) + (i / 2);
                packed[byteIndex] |= (byte)((i & 1) == 0 ? code : code << 4);
                double err = (w[i] - q) / u[(i * width) + i];
                ReadOnlySpan<double> uRow = u.AsSpan((i * width) + i + 1, width - i - 1);
                Span<double> rest = w.AsSpan(i + 1);
                for (int j = 0; j < rest.Length; j++)
                {
                    rest[j] -= err * uRow[j];
                }
            }
        });

        return new Mxfp4Matrix(rows, columns, packed, scales);
    }

    private static double[] Symmetric(HessianAccumulator hessian)
    {
        int n = hessian.Width;
        double scale = 2.0 / Math.Max(1, hessian.Count);
        var h = new double[n * n];
        for (int i = 0; i < n; i++)
        {
            for (int j = i; j < n; j++)
            {
                double v = hessian.Sum[(i * n) + j] * scale;
                h[(i * n) + j] = v;
                h[(j * n) + i] = v;
            }
        }

        return h;
    }

    /// <summary>U with <c>H⁻¹ = Uᵀ U</c>, U upper triangular (via L Lᵀ = H, H⁻¹ = L⁻ᵀ L⁻¹, then Cholesky of H⁻¹).</summary>
    internal static double[] UpperCholeskyOfInverse(double[] h, int n)
    {
        double[] l = Cholesky(h, n);
        // Invert the lower-triangular L in place of a new matrix.
        var linv = new double[n * n];
        for (int i = 0; i < n; i++)
        {
            linv[(i * n) + i] = 1 / l[(i * n) + i];
            for (int j = 0; j < i; j++)
            {
                double sum = 0;
                for (int k = j; k < i; k++)
                {
                    sum += l[(i * n) + k] * linv[(k * n) + j];
                }

                linv[(i * n) + j] = -sum / l[(i * n) + i];
            }
        }

        // H⁻¹ = L⁻ᵀ L⁻¹.
        var inverse = new double[n * n];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j <= i; j++)
            {
                double sum = 0;
                for (int k = i; k < n; k++)
                {
                    sum += linv[(k * n) + i] * linv[(k * n) + j];
                }

                inverse[(i * n) + j] = sum;
                inverse[(j * n) + i] = sum;
            }
        }

        double[] l2 = Cholesky(inverse, n);
        var u = new double[n * n];
        for (int i = 0; i < n; i++)
        {
            for (int j = i; j < n; j++)
            {
                u[(i * n) + j] = l2[(j * n) + i];
            }
        }

        return u;
    }

    internal static double[] Cholesky(double[] a, int n)
    {
        var l = new double[n * n];
        for (int j = 0; j < n; j++)
        {
            double diag = a[(j * n) + j];
            for (int k = 0; k < j; k++)
            {
                diag -= l[(j * n) + k] * l[(j * n) + k];
            }

            if (!(diag > 0))
            {
                throw new InvalidOperationException($"GPTQ: the damped Hessian is not positive definite at column {j}; increase damping or calibration data.");
            }

            l[(j * n) + j] = Math.Sqrt(diag);
            for (int i = j + 1; i < n; i++)
            {
                double sum = a[(i * n) + j];
                for (int k = 0; k < j; k++)
                {
                    sum -= l[(i * n) + k] * l[(j * n) + k];
                }

                l[(i * n) + j] = sum / l[(j * n) + j];
            }
        }

        return l;
    }
}
