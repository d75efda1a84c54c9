namespace LocalMxfp4.Quantization.Transforms;

/// <summary>The 32×32 orthogonal matrices the transforms are built from (row-major float64, n = 32).</summary>
public static class OrthogonalMatrices
{
    /// <summary>The MX block size.</summary>
    public const int N = 32;

    /// <summary>The identity.</summary>
    public static double[] Identity()
    {
        var m = new double[N * N];
        for (int i = 0; i < N; i++)
        {
            m[(i * N) + i] = 1;
        }

        return m;
    }

    /// <summary>
    /// DuQuant's base matrix R̃: an orthogonal matrix whose first row is uniform (1/√32), built as in the reference
    /// code from n−1 Givens rotations on coordinates (i, i+1) with cos = 1/√(i+2), sin = √(i+1)/√(i+2), then index 0
    /// swapped with n−1 in rows and columns — a permuted Helmert matrix.
    /// </summary>
    public static double[] Helmert()
    {
        double[] m = Identity();
        for (int i = 0; i < N - 1; i++)
        {
            double c = 1 / Math.Sqrt(i + 2), s = Math.Sqrt(i + 1) / Math.Sqrt(i + 2);
            // Left-multiply by the rotation G acting on rows i and i+1.
            for (int col = 0; col < N; col++)
            {
                double a = m[(i * N) + col], b = m[((i + 1) * N) + col];
                m[(i * N) + col] = (c * a) - (s * b);
                m[((i + 1) * N) + col] = (s * a) + (c * b);
            }
        }

        SwapRowsAndColumns(m, 0, N - 1);
        // The construction's last row carries the uniform vector; after the swap it is row 0. Fix its sign positive.
        if (m[0] < 0)
        {
            for (int col = 0; col < N; col++)
            {
                m[col] = -m[col];
            }
        }

        return m;
    }

    /// <summary>A Haar-random orthogonal matrix of size <paramref name="n"/>: Gram–Schmidt (twice, for stability) on a Gaussian matrix.</summary>
    public static double[] RandomOrthogonal(int n, Random rng)
    {
        ArgumentNullException.ThrowIfNull(rng);
        var q = new double[n * n];
        for (int i = 0; i < q.Length; i++)
        {
            q[i] = Gaussian(rng);
        }

        for (int i = 0; i < n; i++)
        {
            for (int pass = 0; pass < 2; pass++)
            {
                for (int k = 0; k < i; k++)
                {
                    double dot = 0;
                    for (int j = 0; j < n; j++)
                    {
                        dot += q[(i * n) + j] * q[(k * n) + j];
                    }

                    for (int j = 0; j < n; j++)
                    {
                        q[(i * n) + j] -= dot * q[(k * n) + j];
                    }
                }
            }

            double norm = 0;
            for (int j = 0; j < n; j++)
            {
                norm += q[(i * n) + j] * q[(i * n) + j];
            }

            norm = Math.Sqrt(norm);
            for (int j = 0; j < n; j++)
            {
                q[(i * n) + j] /= norm;
            }
        }

        return q;
    }

    /// <summary>The normalised Sylvester Hadamard matrix H₃₂/√32 (symmetric, its own inverse).</summary>
    public static double[] Hadamard()
    {
        var m = new double[N * N];
        double scale = 1 / Math.Sqrt(N);
        for (int i = 0; i < N; i++)
        {
            for (int j = 0; j < N; j++)
            {
                m[(i * N) + j] = (System.Numerics.BitOperations.PopCount((uint)(i & j)) & 1) == 0 ? scale : -scale;
            }
        }

        return m;
    }

    /// <summary><c>a · b</c> for n×n row-major matrices.</summary>
    public static double[] Multiply(double[] a, double[] b, int n = N)
    {
        var c = new double[n * n];
        for (int i = 0; i < n; i++)
        {
            for (int k = 0; k < n; k++)
            {
                double aik = a[(i * n) + k];
                if (aik == 0)
                {
                    continue;
                }

                for (int j = 0; j < n; j++)
                {
                    c[(i * n) + j] += aik * b[(k * n) + j];
                }
            }
        }

        return c;
    }

    /// <summary>max |M·Mᵀ − I|: zero (to rounding) for an orthogonal matrix.</summary>
    public static double OrthogonalityError(ReadOnlySpan<double> m, int n = N)
    {
        double worst = 0;
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double dot = 0;
                for (int k = 0; k < n; k++)
                {
                    dot += m[(i * n) + k] * m[(j * n) + k];
                }

                worst = Math.Max(worst, Math.Abs(dot - (i == j ? 1 : 0)));
            }
        }

        return worst;
    }

    /// <summary>Swaps index <paramref name="a"/> and <paramref name="b"/> in rows and columns: <c>P·M·P</c>.</summary>
    public static void SwapRowsAndColumns(double[] m, int a, int b, int n = N)
    {
        if (a == b)
        {
            return;
        }

        for (int j = 0; j < n; j++)
        {
            (m[(a * n) + j], m[(b * n) + j]) = (m[(b * n) + j], m[(a * n) + j]);
        }

        for (int i = 0; i < n; i++)
        {
            (m[(i * n) + a], m[(i * n) + b]) = (m[(i * n) + b], m[(i * n) + a]);
        }
    }

    /// <summary>A standard normal sample (Box–Muller).</summary>
    public static double Gaussian(Random rng)
    {
        double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
        return Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }
}
