using LocalMxfp4.Cuda;
using LocalMxfp4.Cuda.Blackwell;
using LocalMxfp4.Engine.Loading;
using LocalMxfp4.Engine.Sampling;
using LocalMxfp4.Models.Configuration;
using LocalMxfp4.Models.Quantized;
using LocalMxfp4.Numerics.Mxfp4;

namespace LocalMxfp4.Cuda.Tests;

/// <summary>The sampler replica the device draw is checked against equals the CPU <see cref="Sampler"/> (no GPU needed).</summary>
public sealed class SamplerReplicaTests
{
    public static TheoryData<float, int, float> Cases() => new()
    {
        { 0.8f, 0, 1f },
        { 0.7f, 40, 1f },
        { 1.0f, 0, 0.9f },
        { 0.6f, 50, 0.95f },
        { 1.3f, 0, 0.5f },
        { 0.9f, 1, 1f },
    };

    /// <summary>Same seed → the CPU sampler and <see cref="CudaSampler.HostDraw"/> with that seed's uniforms choose the same tokens.</summary>
    [Theory]
    [MemberData(nameof(Cases))]
    public void HostDrawEqualsCpuSampler(float temperature, int topK, float topP)
    {
        var rng = new Random(Environment.TickCount);
        int seed = rng.Next();
        var options = new SamplingOptions { Temperature = temperature, TopK = topK, TopP = topP, Seed = seed };
        var sampler = new Sampler(options);
        var uniforms = new Random(seed);
        for (int i = 0; i < 50; i++)
        {
            float[] logits = Gpu.Activations(rng, 3000, 2f).Select(v => float.IsFinite(v) ? Math.Clamp(v, -30f, 30f) : 0f).ToArray();
            int expected = sampler.Sample((float[])logits.Clone(), []);
            Assert.Equal(expected, CudaSampler.HostDraw(logits, options, uniforms.NextDouble()));
        }
    }
}

/// <summary>Scale-factor layouts of the Blackwell paths, produced from our E8M0 planes (checked on the CPU).</summary>
public sealed class BlackwellLayoutTests
{
    /// <summary>Each sm_120a scale register holds blocks 4j…4j+3 of its row, low byte first, zero-padded.</summary>
    [Fact]
    public void Sm120RegistersHoldFourConsecutiveBlocks()
    {
        var rng = new Random(Environment.TickCount);
        const int rows = 19, blocks = 11;
        var scales = new byte[rows * blocks];
        rng.NextBytes(scales);
        uint[] regs = Sm120ScaleLayout.Registers(scales, rows, blocks);
        Assert.Equal(rows * 3, regs.Length);
        for (int r = 0; r < rows; r++)
        {
            for (int b = 0; b < 12; b++)
            {
                byte expected = b < blocks ? scales[(r * blocks) + b] : (byte)0;
                Assert.Equal(expected, (byte)(regs[(r * 3) + (b / 4)] >> (8 * (b % 4))));
            }
        }
    }

    /// <summary>
    /// Through the fragment rules (thread-id 0, byte-id 0/2) every (row, block) of a 16×128 A tile is supplied by exactly
    /// one lane and byte, and the two k64 steps read blocks (0,1) and (2,3).
    /// </summary>
    [Fact]
    public void Sm120FragmentRulesCoverTheTileOnce()
    {
        var seen = new HashSet<(int, int)>();
        for (int lane = 0; lane < 32; lane++)
        {
            for (int b = 0; b < 4; b++)
            {
                if (Sm120ScaleLayout.ScaleASource(lane, 0, b) is (int row, int block))
                {
                    Assert.True(seen.Add((row, block)));
                }
            }
        }

        Assert.Equal(16 * 4, seen.Count);
        Assert.Equal(8 * 4, Enumerable.Range(0, 32).SelectMany(l => Enumerable.Range(0, 4).Select(b => Sm120ScaleLayout.ScaleBSource(l, 0, b))).Count(s => s is not null));
        Assert.Equal([4, 5, 6, 7], new[] { Sm120ScaleLayout.BlockOfStep(1, 0, 0), Sm120ScaleLayout.BlockOfStep(1, 0, 1), Sm120ScaleLayout.BlockOfStep(1, 2, 0), Sm120ScaleLayout.BlockOfStep(1, 2, 1) });
    }

    /// <summary>The 128×4 swizzle (tcgen05 / cuBLASLt): a bijection onto the padded atoms with the documented byte positions.</summary>
    [Fact]
    public void Sm100SwizzleIsTheDocumentedBijection()
    {
        var rng = new Random(Environment.TickCount);
        const int rows = 200, blocks = 10;
        var scales = new byte[rows * blocks];
        for (int i = 0; i < scales.Length; i++)
        {
            scales[i] = (byte)(1 + rng.Next(254));
        }

        byte[] swizzled = Sm100ScaleLayout.Swizzle(scales, rows, blocks);
        Assert.Equal(2 * 3 * 512, swizzled.Length);
        var offsets = new HashSet<int>();
        for (int r = 0; r < rows; r++)
        {
            for (int b = 0; b < blocks; b++)
            {
                int at = Sm100ScaleLayout.Offset(r, b, blocks);
                Assert.True(offsets.Add(at));
                Assert.Equal(scales[(r * blocks) + b], swizzled[at]);
            }
        }

        Assert.Equal(0, Sm100ScaleLayout.Offset(0, 0, blocks));
        Assert.Equal(16, Sm100ScaleLayout.Offset(1, 0, blocks));
        Assert.Equal(4, Sm100ScaleLayout.Offset(32, 0, blocks));
        Assert.Equal(3, Sm100ScaleLayout.Offset(0, 3, blocks));
        Assert.Equal(512, Sm100ScaleLayout.Offset(0, 4, blocks));
        Assert.Equal(3 * 512, Sm100ScaleLayout.Offset(128, 0, blocks));
        Assert.Equal(rows * blocks, swizzled.Count(v => v != 0)); // padding stays zero
    }
}

/// <summary>The binding and backend selection, with or without a GPU.</summary>
public sealed class BackendTests
{
    /// <summary>Either a context with a real device, or <see cref="CudaUnavailableException"/> with a reason (never another error).</summary>
    [Fact]
    public void ContextOrTypedUnavailability()
    {
        try
        {
            using CudaContext context = CudaContext.Create();
            Assert.False(string.IsNullOrWhiteSpace(context.Name));
            Assert.True(context.ComputeCapability.Major >= 5);
            Assert.True(context.TotalMemory > 0);
        }
        catch (CudaUnavailableException e)
        {
            Assert.False(string.IsNullOrWhiteSpace(e.Reason));
        }
    }

    /// <summary>Backend = Cuda without a usable GPU fails with <see cref="AcceleratorUnavailableException"/>; Auto falls back to the CPU and says why.</summary>
    [Fact]
    public void SelectionReportsWhyCudaIsUnavailable()
    {
        string model = QuantizedFixtures.Stories;
        if (Gpu.Reason is null)
        {
            using var engine = EngineLoader.Load(model, new EngineLoadOptions { Backend = EngineBackend.Cuda });
            Assert.Equal("cuda", engine.Description.Backend);
            AcceleratorUnavailableException missing = Assert.Throws<AcceleratorUnavailableException>(
                () => EngineLoader.Load(model, new EngineLoadOptions { Backend = EngineBackend.Cuda, Device = 99 }));
            Assert.Contains("device 99 does not exist", missing.Reason, StringComparison.Ordinal);
            return;
        }

        AcceleratorUnavailableException e = Assert.Throws<AcceleratorUnavailableException>(() => EngineLoader.Load(model, new EngineLoadOptions { Backend = EngineBackend.Cuda }));
        Assert.Equal(EngineBackend.Cuda, e.Backend);
        Assert.False(string.IsNullOrWhiteSpace(e.Reason));
        using var cpu = EngineLoader.Load(model, new EngineLoadOptions { Backend = EngineBackend.Auto });
        Assert.Equal("cpu", cpu.Description.Backend);
        Assert.False(string.IsNullOrWhiteSpace(AcceleratorBackends.LastFallbackReason));
    }

    /// <summary>A failing driver call surfaces as a typed exception carrying the CUDA error name.</summary>
    [Fact]
    public void DriverErrorsCarryTheirCudaName()
    {
        (CudaContext ctx, _) = Gpu.Require();
        CudaOutOfMemoryException e = Assert.Throws<CudaOutOfMemoryException>(() => DeviceBuffer.Allocate(ctx, 1L << 50));
        Assert.Equal("CUDA_ERROR_OUT_OF_MEMORY", e.ErrorName);
        Assert.Contains("cuMemAlloc", e.Call);
    }
}

/// <summary>What <see cref="CudaMemoryRequirements"/> predicts, against sizes worked out by hand (no GPU needed).</summary>
public sealed class MemoryRequirementTests
{
    /// <summary>LLaMA-3-8B (32 layers, 8 key/value heads of 128) keeps 128 KiB of bf16 keys and values per token: 1 GiB at 8k tokens.</summary>
    [Fact]
    public void KvCacheOfLlama3_8B()
    {
        LlamaConfig config = LlamaConfig.Parse("""
            {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
             "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 8192, "rope_theta": 500000.0}
            """);
        Assert.Equal(1L << 30, CudaMemoryRequirements.KvCache(config, 8192, CudaKvCacheFormat.BFloat16));
        Assert.Equal(2L << 30, CudaMemoryRequirements.KvCache(config, 8192, CudaKvCacheFormat.Float32));
        Assert.Equal(128L << 10, CudaMemoryRequirements.KvCache(config, 1, CudaKvCacheFormat.BFloat16));
        Assert.Equal("1.00 GiB", CudaMemoryRequirements.Format(1L << 30));
        Assert.Equal("128.0 MiB", CudaMemoryRequirements.Format(128L << 20));
    }

    /// <summary>
    /// Hidden 40 and intermediate 72 are 2 and 3 blocks, both padded to 4 on the device (17 bytes a block with its scale):
    /// q|k|v 80 rows · 68 = 5440, o 40 · 68 = 2720, gate|up 144 · 68 = 9792, down 40 · 68 = 2720; norms 2 · 40 · 4 = 320;
    /// one shared 32×32 transform 4096; tied bf16 embedding 10 · 40 · 2 = 800; final norm 160. Total 26048.
    /// </summary>
    [Fact]
    public void WeightsOfASmallModelWithPaddedBlocks()
    {
        LlamaConfig config = LlamaConfig.Parse("""
            {"hidden_size": 40, "intermediate_size": 72, "num_hidden_layers": 1, "num_attention_heads": 2,
             "num_key_value_heads": 1, "vocab_size": 10, "max_position_embeddings": 64, "tie_word_embeddings": true}
            """);
        static Mxfp4Matrix M(int rows, int columns)
        {
            int blocks = (columns + 31) / 32;
            return new Mxfp4Matrix(rows, columns, new byte[rows * blocks * 16], new byte[rows * blocks]);
        }

        var layer = new QuantizedLayer(
            new float[40], M(40, 40), M(20, 40), M(20, 40), M(40, 40),
            new float[40], M(72, 40), M(72, 40), M(40, 72),
            new InputTransform(new float[32 * 32], 2), null, null, null);
        var model = new QuantizedModel(config, new QuantizationConfig(), new float[10 * 40], [layer], new float[40], null);
        Assert.Equal(26048, CudaMemoryRequirements.Weights(model));
        Assert.Equal(26048 + 800, CudaMemoryRequirements.Weights(model with { LmHead = new float[10 * 40] }));
    }
}
