using LocalMxfp4.Cuda;

namespace LocalMxfp4.Cuda.Tests;

/// <summary>
/// The GPU the tests share (device 0 with the kernels loaded), or the reason there is none: tests that need it call
/// <see cref="Require"/>, which skips them cleanly on machines without an NVIDIA driver or device (CI).
/// </summary>
internal static class Gpu
{
    private static readonly Lazy<(CudaContext? Context, CudaKernels? Kernels, string? Reason)> Shared = new(() =>
    {
        try
        {
            CudaContext context = CudaContext.Create();
            try
            {
                return (context, CudaKernels.Load(context), null);
            }
            catch (CudaUnavailableException e)
            {
                context.Dispose();
                return (null, null, e.Reason);
            }
        }
        catch (CudaUnavailableException e)
        {
            return (null, null, e.Reason);
        }
    });

    /// <summary>Why there is no GPU, or null.</summary>
    public static string? Reason => Shared.Value.Reason;

    /// <summary>The shared context and kernels; skips the test when there is no usable GPU.</summary>
    public static (CudaContext Context, CudaKernels Kernels) Require()
    {
        (CudaContext? context, CudaKernels? kernels, string? reason) = Shared.Value;
        if (context is null || kernels is null)
        {
            Assert.Skip("No usable CUDA GPU: " + reason);
        }

        context.MakeCurrent();
        return (context, kernels);
    }

    /// <summary>‖a − b‖ / ‖b‖ in float64 (NaN anywhere gives +∞).</summary>
    public static double RelativeError(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        Assert.Equal(b.Length, a.Length);
        double diff = 0, norm = 0;
        for (int i = 0; i < a.Length; i++)
        {
            if (float.IsNaN(a[i]) || float.IsNaN(b[i]))
            {
                return double.PositiveInfinity;
            }

            double d = (double)a[i] - b[i];
            diff += d * d;
            norm += (double)b[i] * b[i];
        }

        return Math.Sqrt(diff / Math.Max(norm, 1e-300));
    }

    /// <summary>Values with a heavy tail (a few outliers per block), exact zeros and tiny values, as activations have.</summary>
    public static float[] Activations(Random rng, int count, float scale = 1f)
    {
        var x = new float[count];
        for (int i = 0; i < count; i++)
        {
            double u = rng.NextDouble();
            double g = Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
            x[i] = u < 0.02 ? 0f : u < 0.04 ? (float)(g * 1e-30) : u < 0.06 ? (float)(g * 40) : (float)g;
            x[i] *= scale;
        }

        return x;
    }

    /// <summary>A random MXFP4 matrix with plausible weight scales.</summary>
    public static LocalMxfp4.Numerics.Mxfp4.Mxfp4Matrix RandomMatrix(Random rng, int rows, int columns)
    {
        int blocks = (columns + 31) / 32;
        var packed = new byte[rows * blocks * 16];
        var scales = new byte[rows * blocks];
        rng.NextBytes(packed);
        for (int i = 0; i < scales.Length; i++)
        {
            scales[i] = (byte)rng.Next(116, 127);
        }

        // Columns past the logical width are zero nibbles, as the codec writes them.
        for (int r = 0; r < rows; r++)
        {
            for (int c = columns; c < blocks * 32; c++)
            {
                int at = (r * blocks * 16) + (c / 2);
                packed[at] &= (byte)(c % 2 == 0 ? 0xF0 : 0x0F);
            }
        }

        return new LocalMxfp4.Numerics.Mxfp4.Mxfp4Matrix(rows, columns, packed, scales);
    }

    /// <summary>A random orthogonal-ish 32×32 transform (or <paramref name="blocks"/> of them).</summary>
    public static float[] RandomTransform(Random rng, int blocks)
    {
        var m = new float[blocks * 1024];
        for (int i = 0; i < m.Length; i++)
        {
            m[i] = (float)((rng.NextDouble() - 0.5) * 0.4);
        }

        return m;
    }
}
