namespace LocalMxfp4.Engine.Layers;

/// <summary>
/// Runs linear layers that read the same input (q/k/v; gate/up). When they are W4A4 layers with the same online
/// transform and scale rule, the input is transformed and quantized once for all of them — the transform is the
/// costliest part of activation quantization; otherwise each layer runs on its own.
/// </summary>
public static unsafe class LinearGroup
{
    /// <summary>Two layers over one input.</summary>
    public static void Forward(ReadOnlySpan<float> input, int rows, ILinear a, Span<float> outputA, ILinear b, Span<float> outputB)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        if (a is Mxfp4Linear qa && b is Mxfp4Linear qb && qa.SharesInputWith(qb))
        {
            Mxfp4Activations act = qa.QuantizeActivations(input, rows);
            if (Mxfp4Gemm.Supports(qa.Kernel))
            {
                fixed (float* ya = outputA)
                fixed (float* yb = outputB)
                {
                    Mxfp4Linear.ForwardFused(act, rows, [qa, qb], [(nint)ya, (nint)yb]);
                }

                return;
            }

            qa.Forward(act, outputA, rows);
            qb.Forward(act, outputB, rows);
            return;
        }

        a.Forward(input, outputA, rows);
        b.Forward(input, outputB, rows);
    }

    /// <summary>Three layers over one input.</summary>
    public static void Forward(ReadOnlySpan<float> input, int rows, ILinear a, Span<float> outputA, ILinear b, Span<float> outputB, ILinear c, Span<float> outputC)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        ArgumentNullException.ThrowIfNull(c);
        if (a is Mxfp4Linear qa && b is Mxfp4Linear qb && c is Mxfp4Linear qc && qa.SharesInputWith(qb) && qa.SharesInputWith(qc))
        {
            Mxfp4Activations act = qa.QuantizeActivations(input, rows);
            if (Mxfp4Gemm.Supports(qa.Kernel))
            {
                fixed (float* ya = outputA)
                fixed (float* yb = outputB)
                fixed (float* yc = outputC)
                {
                    Mxfp4Linear.ForwardFused(act, rows, [qa, qb, qc], [(nint)ya, (nint)yb, (nint)yc]);
                }

                return;
            }

            qa.Forward(act, outputA, rows);
            qb.Forward(act, outputB, rows);
            qc.Forward(act, outputC, rows);
            return;
        }

        a.Forward(input, outputA, rows);
        b.Forward(input, outputB, rows);
        c.Forward(input, outputC, rows);
    }
}
