using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
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
            _parallel.For(outSize, (long)rows * inSize, (start, end) => Rows(wp, xp, yp, inSize, outSize, rows, start, end));
        }
    }

    /// <summary>
    /// Output rows <c>[start, end)</c> for every token, tiled: with AVX-512 each 16 weights are widened once for two rows
    /// × four tokens (or four rows × one token); every (row, token) is still accumulated by <see cref="Dot"/>'s rule.
    /// </summary>
    private static void Rows(ushort* w, float* x, float* y, int inSize, int outSize, int tokens, int start, int end)
    {
        if (!Avx512F.IsSupported || inSize % 16 != 0)
        {
            for (int o = start; o < end; o++)
            {
                for (int t = 0; t < tokens; t++)
                {
                    y[(t * outSize) + o] = Dot(w + ((long)o * inSize), x + (t * inSize), inSize);
                }
            }

            return;
        }

        const int rowBlock = 16;
        for (int rb = start; rb < end; rb += rowBlock)
        {
            int re = Math.Min(rb + rowBlock, end);
            for (int t0 = 0; t0 < tokens; t0 += 4)
            {
                int nt = Math.Min(4, tokens - t0);
                int o = rb;
                if (nt == 1)
                {
                    for (; o + 4 <= re; o += 4)
                    {
                        Rows4Token1(w + ((long)o * inSize), inSize, x + (t0 * inSize), y + (t0 * outSize) + o);
                    }
                }
                else if (nt == 4)
                {
                    for (; o + 2 <= re; o += 2)
                    {
                        Rows2Tokens4(w + ((long)o * inSize), inSize, x + (t0 * inSize), y + (t0 * outSize) + o, outSize);
                    }
                }

                for (; o < re; o++)
                {
                    for (int t = t0; t < t0 + nt; t++)
                    {
                        y[(t * outSize) + o] = Dot(w + ((long)o * inSize), x + (t * inSize), inSize);
                    }
                }
            }
        }
    }

    /// <summary>Sixteen bfloat16 weights widened to float32 (a 16-bit shift: exact).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Widen16(ushort* p) => Avx512F.ShiftLeftLogical(Avx512F.ConvertToVector512UInt32(Vector256.Load(p)), 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Rows4Token1(ushort* w, int n, float* x, float* y)
    {
        ushort* w1 = w + n, w2 = w1 + n, w3 = w2 + n;
        Vector512<float> a0 = Vector512<float>.Zero, a1 = a0, a2 = a0, a3 = a0;
        // The weights stream from memory once: fetch the next four rows ahead in address order, 128 bytes per step
        // (into L2 when they are long, so they do not push the activations out of L1).
        ushort* ahead = w + (4L * n);
        bool shortRows = n * 2 <= 2048;
        for (int i = 0; i < n; i += 16)
        {
            if (shortRows)
            {
                Sse.Prefetch0(ahead + (i * 4));
                Sse.Prefetch0(ahead + (i * 4) + 32);
            }
            else
            {
                Sse.Prefetch1(ahead + (i * 4));
                Sse.Prefetch1(ahead + (i * 4) + 32);
            }

            Vector512<float> xv = Vector512.Load(x + i);
            a0 = Avx512F.FusedMultiplyAdd(Widen16(w + i), xv, a0);
            a1 = Avx512F.FusedMultiplyAdd(Widen16(w1 + i), xv, a1);
            a2 = Avx512F.FusedMultiplyAdd(Widen16(w2 + i), xv, a2);
            a3 = Avx512F.FusedMultiplyAdd(Widen16(w3 + i), xv, a3);
        }

        HorizontalSum.Sum4(a0, a1, a2, a3).Store(y);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Rows2Tokens4(ushort* w, int n, float* x, float* y, int ldy)
    {
        ushort* w1 = w + n;
        float* x1 = x + n, x2 = x1 + n, x3 = x2 + n;
        Vector512<float> a00 = Vector512<float>.Zero, a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00;
        ushort* ahead = w + (2L * n);
        bool shortRows = n * 2 <= 2048;
        for (int i = 0; i < n; i += 16)
        {
            if (shortRows)
            {
                Sse.Prefetch0(ahead + (i * 2));
            }
            else
            {
                Sse.Prefetch1(ahead + (i * 2));
            }

            Vector512<float> v0 = Widen16(w + i), v1 = Widen16(w1 + i);
            Vector512<float> xv = Vector512.Load(x + i);
            a00 = Avx512F.FusedMultiplyAdd(v0, xv, a00);
            a10 = Avx512F.FusedMultiplyAdd(v1, xv, a10);
            xv = Vector512.Load(x1 + i);
            a01 = Avx512F.FusedMultiplyAdd(v0, xv, a01);
            a11 = Avx512F.FusedMultiplyAdd(v1, xv, a11);
            xv = Vector512.Load(x2 + i);
            a02 = Avx512F.FusedMultiplyAdd(v0, xv, a02);
            a12 = Avx512F.FusedMultiplyAdd(v1, xv, a12);
            xv = Vector512.Load(x3 + i);
            a03 = Avx512F.FusedMultiplyAdd(v0, xv, a03);
            a13 = Avx512F.FusedMultiplyAdd(v1, xv, a13);
        }

        Vector128<float> r0 = HorizontalSum.Sum4(a00, a01, a02, a03), r1 = HorizontalSum.Sum4(a10, a11, a12, a13);
        for (int t = 0; t < 4; t++)
        {
            y[t * ldy] = r0[t];
            y[(t * ldy) + 1] = r1[t];
        }
    }

    /// <summary>
    /// Σ w·x in a fixed order: with AVX-512 one 16-lane fused multiply-add accumulator over whole groups of 16 (what the
    /// tiles compute), else two 8-lane ones; then a scalar tail.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float Dot(ushort* w, float* x, int n)
    {
        int i = 0;
        float sum = 0;
        if (Avx512F.IsSupported)
        {
            Vector512<float> acc = Vector512<float>.Zero;
            for (; i + 16 <= n; i += 16)
            {
                acc = Avx512F.FusedMultiplyAdd(Widen16(w + i), Vector512.Load(x + i), acc);
            }

            sum = HorizontalSum.Sum(acc);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> acc0 = Vector256<float>.Zero, acc1 = Vector256<float>.Zero;
            for (; i + 16 <= n; i += 16)
            {
                (Vector256<uint> lo, Vector256<uint> hi) = Vector256.Widen(Vector256.Load(w + i));
                acc0 = Vector256.FusedMultiplyAdd((lo << 16).AsSingle(), Vector256.Load(x + i), acc0);
                acc1 = Vector256.FusedMultiplyAdd((hi << 16).AsSingle(), Vector256.Load(x + i + 8), acc1);
            }

            sum = Vector256.Sum(acc0 + acc1);
        }

        for (; i < n; i++)
        {
            sum = MathF.FusedMultiplyAdd(BitConverter.Int32BitsToSingle(w[i] << 16), x[i], sum);
        }

        return sum;
    }
}
