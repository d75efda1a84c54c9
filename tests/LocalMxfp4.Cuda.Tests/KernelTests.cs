using LocalMxfp4.Cuda;
using LocalMxfp4.Engine.Layers;
using LocalMxfp4.Engine.Sampling;
using LocalMxfp4.Models.Quantized;
using LocalMxfp4.Numerics.Mxfp4;

namespace LocalMxfp4.Cuda.Tests;

/// <summary>Every kernel against the CPU reference on fresh random inputs: integers exact, floats within 1e-3 relative.</summary>
public sealed class KernelTests
{
    private const double FloatTolerance = 1e-3;

    public static TheoryData<int, int, int, ScaleRule> QuantizeCases() => new()
    {
        { 4096, 0, 0, ScaleRule.Floor },
        { 4096, 1, 1, ScaleRule.Floor },
        { 172, 1, 1, ScaleRule.Even },
        { 1000, 0, 2, ScaleRule.RoundUp },
        { 14336, 0, 1, ScaleRule.Floor },
        { 64, 1, 2, ScaleRule.Even },
    };

    /// <summary>Fused RMSNorm + block transform + MXFP4 quantization: codes, scale bytes and packed nibbles equal the C# path.</summary>
    [Theory]
    [MemberData(nameof(QuantizeCases))]
    public void QuantizeMatchesCpu(int width, int mode, int transformKind, ScaleRule rule)
    {
        (CudaContext ctx, CudaKernels k) = Gpu.Require();
        var rng = new Random(Environment.TickCount);
        const int rows = 5;
        int pb = CudaLayout.PaddedBlocks(width), blocks = (width + 31) / 32;
        float[] x = Gpu.Activations(rng, rows * width);
        x[3] = float.NaN; // row 0: a non-finite block (scale 0xFF, codes 0)
        float[] gamma = Gpu.Activations(rng, width, 0.5f);
        float[]? transform = transformKind == 0 ? null : Gpu.RandomTransform(rng, transformKind == 1 ? 1 : blocks);
        const double eps = 1e-5;

        using CudaStream stream = CudaStream.Create(ctx);
        using DeviceBuffer dx = DeviceBuffer.Upload<float>(ctx, x), dg = DeviceBuffer.Upload<float>(ctx, gamma);
        using DeviceBuffer? dt = transform is null ? null : DeviceBuffer.Upload<float>(ctx, transform);
        using DeviceBuffer codes = DeviceBuffer.Allocate(ctx, rows * pb * 32), exps = DeviceBuffer.Allocate(ctx, rows * pb), packed = DeviceBuffer.Allocate(ctx, rows * pb * 16);
        stream.Fill8(codes.Pointer, 0x77, codes.Bytes); // poison: every byte must be written
        stream.Fill8(exps.Pointer, 0x77, exps.Bytes);
        stream.Launch(k.Quantize, ((pb + 7) / 8, rows, 1), (256, 1, 1), 0,
            dx, width, width, pb, mode, dg, eps, 0, dt, blocks, transformKind == 1 ? 1 : 0, (int)rule, codes, exps, packed, 0UL, 0, 1, 0UL, 1);
        stream.Synchronize();
        sbyte[] gpuCodes = codes.ToArray<sbyte>();
        byte[] gpuExps = exps.ToArray<byte>(), gpuPacked = packed.ToArray<byte>();

        (sbyte[] refCodes, byte[] refExps, byte[] refPacked) = ReferenceQuantize(x, rows, width, pb, mode, gamma, eps, transform, blocks, rule);
        Assert.Equal(255, gpuExps[0]);
        if (mode == 0)
        {
            Assert.Equal(refExps, gpuExps);
            Assert.Equal(refCodes, gpuCodes);
            Assert.Equal(refPacked, gpuPacked);
        }
        else
        {
            // RMSNorm's float64 sum of squares is added in another order on the GPU; the float scale can differ in its
            // last bit (once in ~1e8 rows), moving a value across a rounding threshold. Allow a handful of such codes.
            int codeMismatches = refCodes.Zip(gpuCodes).Count(p => p.First != p.Second);
            int expMismatches = refExps.Zip(gpuExps).Count(p => p.First != p.Second);
            Assert.True(codeMismatches <= refCodes.Length / 1000 && expMismatches <= refExps.Length / 1000,
                $"{codeMismatches} of {refCodes.Length} codes and {expMismatches} of {refExps.Length} scales differ");
        }
    }

    /// <summary>The exact integer Σ int8a·int8w of every (row, block) equals the C# integer sum.</summary>
    [Fact]
    public void BlockSumsAreExact()
    {
        (CudaContext ctx, CudaKernels k) = Gpu.Require();
        var rng = new Random(Environment.TickCount);
        const int rows = 37, width = 4096;
        int pb = CudaLayout.PaddedBlocks(width);
        Mxfp4Matrix w = Gpu.RandomMatrix(rng, rows, width);
        float[] x = Gpu.Activations(rng, width);
        using CudaStream stream = CudaStream.Create(ctx);
        using DeviceLinear dw = DeviceLinear.Upload(ctx, w);
        using DeviceBuffer dx = DeviceBuffer.Upload<float>(ctx, x), codes = DeviceBuffer.Allocate(ctx, pb * 32), exps = DeviceBuffer.Allocate(ctx, pb);
        using DeviceBuffer sums = DeviceBuffer.Allocate(ctx, rows * pb * 4);
        stream.Launch(k.Quantize, ((pb + 7) / 8, 1, 1), (256, 1, 1), 0, dx, width, width, pb, 0, 0UL, 1e-5, 0, 0UL, 0, 0, 0, codes, exps, 0UL, 0UL, 0, 1, 0UL, 1);
        stream.Launch(k.BlockSums, ((rows * pb + 127) / 128, 1, 1), (128, 1, 1), 0, dw.Packed, rows, pb, codes, sums);
        stream.Synchronize();
        int[] gpu = sums.ToArray<int>();

        (sbyte[] refCodes, _, _) = ReferenceQuantize(x, 1, width, pb, 0, null, 0, null, 0, ScaleRule.Floor);
        for (int r = 0; r < rows; r++)
        {
            for (int b = 0; b < w.Blocks; b++)
            {
                int expected = 0;
                for (int j = 0; j < 32; j++)
                {
                    int nibble = (w.Packed[(r * w.Blocks * 16) + (b * 16) + (j / 2)] >> (4 * (j % 2))) & 0xF;
                    expected += E2M1.DoubledValues[nibble] * refCodes[(b * 32) + Dp4aPosition(j)];
                }

                Assert.Equal(expected, gpu[(r * pb) + b]);
            }
        }
    }

    public static TheoryData<int, int, int, bool> LinearCases() => new()
    {
        { 1, 300, 4096, true },
        { 1, 1030, 172, false },
        { 1, 4096, 14336, true },
        { 1, 20000, 256, false },
        { 77, 200, 1000, true },
        { 130, 259, 4096, false },
        { 3, 64, 64, true },
    };

    /// <summary>W4A4 GEMV (1 token) and tensor-core GEMM (several) equal <see cref="Mxfp4Linear"/>, plain and accumulating.</summary>
    [Theory]
    [MemberData(nameof(LinearCases))]
    public void LinearMatchesCpu(int tokens, int rows, int width, bool withTransform)
    {
        (CudaContext ctx, CudaKernels k) = Gpu.Require();
        var rng = new Random(Environment.TickCount);
        int pb = CudaLayout.PaddedBlocks(width), blocks = (width + 31) / 32;
        Mxfp4Matrix w = Gpu.RandomMatrix(rng, rows, width);
        float[] x = Gpu.Activations(rng, tokens * width);
        float[]? transform = withTransform ? Gpu.RandomTransform(rng, 1) : null;
        float[] residual = Gpu.Activations(rng, tokens * rows);

        using var parallel = new ParallelRows(2);
        var cpu = new Mxfp4Linear(w, transform is null ? null : new BlockTransform(transform, blocks), ScaleRule.Floor, parallel);
        var expected = new float[tokens * rows];
        cpu.Forward(x, expected, tokens);

        using CudaStream stream = CudaStream.Create(ctx);
        using DeviceLinear dw = DeviceLinear.Upload(ctx, w);
        using DeviceBuffer dx = DeviceBuffer.Upload<float>(ctx, x), codes = DeviceBuffer.Allocate(ctx, tokens * pb * 32), exps = DeviceBuffer.Allocate(ctx, tokens * pb);
        using DeviceBuffer? dt = transform is null ? null : DeviceBuffer.Upload<float>(ctx, transform);
        using DeviceBuffer y = DeviceBuffer.Allocate(ctx, tokens * rows * 4);
        stream.Launch(k.Quantize, ((pb + 7) / 8, tokens, 1), (256, 1, 1), 0, dx, width, width, pb, 0, 0UL, 1e-5, 0, dt, blocks, 1, 0, codes, exps, 0UL, 0UL, 0, 1, 0UL, 1);

        // Decode: every GEMV kernel this GPU has, the FP8 one at every split-K; prefill: the tensor-core GEMM.
        var variants = new List<(string Name, Action<bool> Launch)>();
        if (tokens == 1)
        {
            foreach (int split in new[] { 0, 1, -1, 2, 4, 8 })
            {
                variants.Add(($"dp4a split {split}", acc => k.LaunchGemv(stream, CudaGemvKernel.Dp4a, dw.Packed.Pointer, dw.Scales.Pointer, rows, pb, codes.Pointer, exps.Pointer, y.Pointer, acc, split)));
            }

            if (k.HasTensorCoreGemv)
            {
                foreach (int split in new[] { 0, 1, 2, 4, 8 })
                {
                    variants.Add(($"fp8 split {split}", acc => k.LaunchGemv(stream, CudaGemvKernel.TensorCoreFp8, dw.Packed.Pointer, dw.Scales.Pointer, rows, pb, codes.Pointer, exps.Pointer, y.Pointer, acc, split)));
                }
            }
        }
        else
        {
            variants.Add(("gemm", acc => stream.Launch(k.Gemm, ((rows + 127) / 128, (tokens + 63) / 64, 1), (256, 1, 1), CudaKernels.GemmSharedBytes,
                dw.Packed, dw.Scales, rows, pb, codes, exps, tokens, y, rows, acc ? 1 : 0)));
        }

        foreach ((string name, Action<bool> launch) in variants)
        {
            for (int accumulate = 0; accumulate < 2; accumulate++)
            {
                if (accumulate == 0)
                {
                    stream.Fill32(y.Pointer, 0x7FC00000u, tokens * rows); // NaN poison
                }
                else
                {
                    y.CopyFrom<float>(residual);
                }

                launch(accumulate == 1);
                stream.Synchronize();
                float[] gpu = y.ToArray<float>();
                float[] want = accumulate == 0 ? expected : expected.Zip(residual, (a, b) => a + b).ToArray();
                double error = Gpu.RelativeError(gpu, want);
                Assert.True(error <= FloatTolerance, $"{name}: relative error {error:E2} (accumulate {accumulate})");
            }
        }
    }

    /// <summary>
    /// Blackwell (compute 12.x) prefill: the native block-scaled FP4 GEMM on the quantizer's standard MXFP4 planes equals
    /// <see cref="Mxfp4Linear"/>. Skipped elsewhere (the project's GPU machine is an H100, so this has not run yet).
    /// </summary>
    [Theory]
    [InlineData(77, 200, 1000)]
    [InlineData(130, 259, 4096)]
    public void NativeFp4GemmMatchesCpu(int tokens, int rows, int width)
    {
        (CudaContext ctx, CudaKernels k) = Gpu.Require();
        if (k.GemmMxf4Sm120 is not CudaFunction gemm)
        {
            Assert.Skip($"{ctx.Name} (compute {ctx.ComputeCapability}) has no native FP4 kernels (sm_120a; needs compute 12.x and {CudaKernels.BlackwellFatbinName}).");
            return;
        }

        var rng = new Random(Environment.TickCount);
        int pb = CudaLayout.PaddedBlocks(width), blocks = (width + 31) / 32;
        Mxfp4Matrix w = Gpu.RandomMatrix(rng, rows, width);
        float[] x = Gpu.Activations(rng, tokens * width);
        using var parallel = new ParallelRows(2);
        var expected = new float[tokens * rows];
        new Mxfp4Linear(w, null, ScaleRule.Floor, parallel).Forward(x, expected, tokens);

        using CudaStream stream = CudaStream.Create(ctx);
        using DeviceLinear dw = DeviceLinear.Upload(ctx, w);
        using DeviceBuffer dx = DeviceBuffer.Upload<float>(ctx, x), codes = DeviceBuffer.Allocate(ctx, tokens * pb * 32), exps = DeviceBuffer.Allocate(ctx, tokens * pb);
        using DeviceBuffer packed = DeviceBuffer.Allocate(ctx, tokens * pb * 16), y = DeviceBuffer.Allocate(ctx, tokens * rows * 4);
        stream.Launch(k.Quantize, ((pb + 7) / 8, tokens, 1), (256, 1, 1), 0, dx, width, width, pb, 0, 0UL, 1e-5, 0, 0UL, blocks, 1, 0, codes, exps, packed, 0UL, 0, 1, 0UL, 1);
        stream.Fill32(y.Pointer, 0x7FC00000u, tokens * rows);
        stream.Launch(gemm, ((rows + 31) / 32, (tokens + 15) / 16, 1), (128, 1, 1), 0, dw.Packed, dw.Scales, rows, pb, packed, exps, tokens, y, rows, 0);
        stream.Synchronize();
        double error = Gpu.RelativeError(y.ToArray<float>(), expected);
        Assert.True(error <= FloatTolerance, $"relative error {error:E2}");
    }

    /// <summary>
    /// The FP8 tensor-core GEMV forms the same exact block sums as the dp4a kernel: on one token their outputs differ only
    /// by the order the float terms are added (≤ 1e-5 relative), on matrices with every nibble code and wide scale ranges.
    /// </summary>
    [Fact]
    public void TensorCoreGemvEqualsDp4aGemv()
    {
        (CudaContext ctx, CudaKernels k) = Gpu.Require();
        if (!k.HasTensorCoreGemv)
        {
            Assert.Skip($"{ctx.Name} (compute {ctx.ComputeCapability}) or this kernel build has no FP8 tensor-core GEMV.");
        }

        var rng = new Random(Environment.TickCount);
        foreach ((int rows, int width) in new[] { (4096, 4096), (6144, 4096), (4096, 14336), (1027, 200) })
        {
            int pb = CudaLayout.PaddedBlocks(width), blocks = (width + 31) / 32;
            Mxfp4Matrix w = Gpu.RandomMatrix(rng, rows, width);
            float[] x = Gpu.Activations(rng, width);
            using CudaStream stream = CudaStream.Create(ctx);
            using DeviceLinear dw = DeviceLinear.Upload(ctx, w);
            using DeviceBuffer dx = DeviceBuffer.Upload<float>(ctx, x), codes = DeviceBuffer.Allocate(ctx, pb * 32), exps = DeviceBuffer.Allocate(ctx, pb);
            using DeviceBuffer a = DeviceBuffer.Allocate(ctx, rows * 4), b = DeviceBuffer.Allocate(ctx, rows * 4);
            stream.Launch(k.Quantize, ((pb + 7) / 8, 1, 1), (256, 1, 1), 0, dx, width, width, pb, 0, 0UL, 1e-5, 0, 0UL, blocks, 1, 0, codes, exps, 0UL, 0UL, 0, 1, 0UL, 1);
            stream.Fill32(a.Pointer, 0x7FC00000u, rows);
            stream.Fill32(b.Pointer, 0x7FC00000u, rows);
            k.LaunchGemv(stream, CudaGemvKernel.Dp4a, dw.Packed.Pointer, dw.Scales.Pointer, rows, pb, codes.Pointer, exps.Pointer, a.Pointer, false);
            k.LaunchGemv(stream, CudaGemvKernel.TensorCoreFp8, dw.Packed.Pointer, dw.Scales.Pointer, rows, pb, codes.Pointer, exps.Pointer, b.Pointer, false);
            stream.Synchronize();
            double error = Gpu.RelativeError(b.ToArray<float>(), a.ToArray<float>());
            Assert.True(error <= 1e-5, $"{rows}×{width}: fp8 vs dp4a relative error {error:E2}");
        }
    }

    /// <summary>The bf16 lm_head (GEMV and the many-token GEMM) equals <see cref="DenseLinear"/> on bf16-exact weights.</summary>
    [Theory]
    [InlineData(1, 5000, 4096)]
    [InlineData(1, 512, 64)]
    [InlineData(70, 1000, 200)]
    public void LmHeadMatchesCpu(int tokens, int rows, int width)
    {
        (CudaContext ctx, CudaKernels k) = Gpu.Require();
        var rng = new Random(Environment.TickCount);
        float[] w = Gpu.Activations(rng, rows * width, 0.05f).Select(v => BitConverter.UInt32BitsToSingle(BitConverter.SingleToUInt32Bits(v) & 0xFFFF0000u)).ToArray();
        float[] x = Gpu.Activations(rng, tokens * width);
        using var parallel = new ParallelRows(2);
        var expected = new float[tokens * rows];
        new DenseLinear(w, rows, width, parallel).Forward(x, expected, tokens);

        ushort[] bf16 = w.Select(v => (ushort)(BitConverter.SingleToUInt32Bits(v) >> 16)).ToArray();
        using CudaStream stream = CudaStream.Create(ctx);
        using DeviceBuffer dw = DeviceBuffer.Upload<ushort>(ctx, bf16), dx = DeviceBuffer.Upload<float>(ctx, x), y = DeviceBuffer.Allocate(ctx, tokens * rows * 4);
        stream.Fill32(y.Pointer, 0x7FC00000u, tokens * rows);
        if (tokens == 1)
        {
            stream.Launch(k.GemvBf16, ((rows + 15) / 16, 1, 1), (256, 1, 1), 0, dw, rows, width, dx, y);
        }
        else
        {
            stream.Launch(k.GemmBf16, ((rows + 63) / 64, (tokens + 63) / 64, 1), (16, 16, 1), 0, dw, rows, width, dx, tokens, y);
        }

        stream.Synchronize();
        double error = Gpu.RelativeError(y.ToArray<float>(), expected);
        Assert.True(error <= FloatTolerance, $"relative error {error:E2}");
    }

    /// <summary>Device argmax equals <see cref="Sampler.ArgMax"/>: lowest id on ties, NaN never chosen.</summary>
    [Fact]
    public void ArgMaxMatchesCpu()
    {
        (CudaContext ctx, CudaKernels k) = Gpu.Require();
        var rng = new Random(Environment.TickCount);
        using CudaStream stream = CudaStream.Create(ctx);
        using DeviceBuffer values = DeviceBuffer.Allocate(ctx, 128 * 4), indices = DeviceBuffer.Allocate(ctx, 128 * 4), token = DeviceBuffer.Allocate(ctx, 4);
        foreach (int n in new[] { 512, 128256, 77 })
        {
            for (int trial = 0; trial < 4; trial++)
            {
                float[] logits = Gpu.Activations(rng, n);
                int a = rng.Next(n), b = rng.Next(n);
                float top = logits.Max() + 1f;
                logits[a] = top;
                logits[b] = top; // a tie
                logits[rng.Next(n)] = float.NaN;
                using DeviceBuffer dl = DeviceBuffer.Upload<float>(ctx, logits);
                stream.Launch(k.ArgmaxPartial, (128, 1, 1), (256, 1, 1), 0, dl, n, values, indices);
                stream.Launch(k.ArgmaxFinal, (1, 1, 1), (128, 1, 1), 0, values, indices, 128, token, 0UL, 0UL, 0UL);
                stream.Synchronize();
                Assert.Equal(Sampler.ArgMax(logits), token.ToArray<int>()[0]);
            }
        }
    }

    public static TheoryData<float, int, float> SamplingCases() => new()
    {
        { 0.8f, 0, 1f },
        { 0.7f, 40, 1f },
        { 1.0f, 0, 0.9f },
        { 0.6f, 50, 0.95f },
        { 1.3f, 0, 0.5f },
    };

    /// <summary>
    /// The device draw (temperature, top-k, top-p) picks the token the host-side replica picks for the same uniform; the
    /// replica is itself checked against the CPU <see cref="Sampler"/> in <see cref="SamplerReplicaTests"/>.
    /// </summary>
    [Theory]
    [MemberData(nameof(SamplingCases))]
    public void SampleMatchesHostReplica(float temperature, int topK, float topP)
    {
        (CudaContext ctx, CudaKernels k) = Gpu.Require();
        var rng = new Random(Environment.TickCount);
        const int n = 32000;
        float[] logits = Gpu.Activations(rng, n, 2f).Select(v => float.IsFinite(v) ? Math.Clamp(v, -30f, 30f) : 0f).ToArray();
        var options = new SamplingOptions { Temperature = temperature, TopK = topK, TopP = topP };
        using CudaStream stream = CudaStream.Create(ctx);
        using DeviceBuffer dl = DeviceBuffer.Upload<float>(ctx, logits), probs = DeviceBuffer.Allocate(ctx, n * 4),
            keys = DeviceBuffer.Allocate(ctx, CudaKernels.SampleCapacity * 8L), token = DeviceBuffer.Allocate(ctx, 4);
        int agree = 0, draws = 200;
        for (int i = 0; i < draws; i++)
        {
            double u = rng.NextDouble();
            stream.Launch(k.Sample, (1, 1, 1), (1024, 1, 1), 0, dl, n, temperature, topK, topP, u, probs, keys, CudaKernels.SampleCapacity, token);
            stream.Synchronize();
            int gpu = token.ToArray<int>()[0];
            if (gpu < 0)
            {
                continue; // too many candidates for the device: the sampler samples on the host (same function)
            }

            agree += gpu == CudaSampler.HostDraw(logits, options, u) ? 1 : 0;
        }

        // Only draws landing within float rounding of a boundary may differ.
        Assert.True(agree >= draws * 0.98, $"{agree} of {draws} draws agree");
    }

    internal static int Dp4aPosition(int element) => (8 * (element / 8)) + (4 * (element % 2)) + (element % 8 / 2);

    /// <summary>The C# quantization path (RmsNorm, BlockTransform, E8M0, E2M1) in the kernels' output layouts.</summary>
    internal static (sbyte[] Codes, byte[] Exps, byte[] Packed) ReferenceQuantize(
        float[] x, int rows, int width, int pb, int mode, float[]? gamma, double eps, float[]? transform, int transformBlocks, ScaleRule rule)
    {
        var codes = new sbyte[rows * pb * 32];
        var exps = new byte[rows * pb];
        var packed = new byte[rows * pb * 16];
        BlockTransform? bt = transform is null ? null : new BlockTransform(transform, transformBlocks);
        var y = new float[width];
        Span<float> block = stackalloc float[32], rotated = stackalloc float[32];
        for (int r = 0; r < rows; r++)
        {
            ReadOnlySpan<float> row = x.AsSpan(r * width, width);
            if (mode == 1)
            {
                RmsNorm.Apply(row, gamma, y, 1, eps);
            }
            else
            {
                row.CopyTo(y);
            }

            for (int b = 0; b < pb; b++)
            {
                block.Clear();
                for (int j = 0; j < 32 && (b * 32) + j < width; j++)
                {
                    block[j] = y[(b * 32) + j];
                }

                ReadOnlySpan<float> v = block;
                if (bt is not null && b < transformBlocks)
                {
                    bt.Apply(b, block, rotated);
                    v = rotated;
                }

                float amax = 0;
                bool finite = true;
                foreach (float f in v)
                {
                    finite &= float.IsFinite(f);
                    amax = MathF.Max(amax, MathF.Abs(f));
                }

                int at = (r * pb) + b;
                if (!finite)
                {
                    exps[at] = E8M0.NaN;
                    continue;
                }

                byte scale = E8M0.FromAmax(amax, rule);
                exps[at] = scale;
                float inv = E8M0.InverseScale(scale);
                for (int j = 0; j < 32; j++)
                {
                    int code = E2M1.Encode(v[j] * inv);
                    codes[(at * 32) + Dp4aPosition(j)] = E2M1.DoubledValues[code];
                    packed[(at * 16) + (j / 2)] |= (byte)(code << (4 * (j % 2)));
                }
            }
        }

        return (codes, exps, packed);
    }
}
