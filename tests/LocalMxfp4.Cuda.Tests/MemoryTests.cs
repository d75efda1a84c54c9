using LocalMxfp4.Cuda;
using LocalMxfp4.Engine.Contract;
using LocalMxfp4.Engine.Loading;
using LocalMxfp4.Models.Quantized;

namespace LocalMxfp4.Cuda.Tests;

/// <summary>The memory tests fill the GPU, so they run alone, after every other test of the assembly.</summary>
[CollectionDefinition(nameof(GpuMemoryCollection), DisableParallelization = true)]
public sealed class GpuMemoryCollection;

/// <summary>GPU memory: what the engine allocates, and what a user sees when the GPU is full.</summary>
[Collection(nameof(GpuMemoryCollection))]
public sealed class MemoryTests
{
    /// <summary>The engine allocates exactly what <see cref="CudaMemoryRequirements.Weights"/> predicts.</summary>
    [Theory]
    [MemberData(nameof(ModelTests.Models), MemberType = typeof(ModelTests))]
    public void EngineAllocatesWhatTheRequirementsSay(string name)
    {
        Gpu.Require();
        QuantizedModel model = QuantizedModelReader.Read(QuantizedFixtures.Get(name));
        using var engine = new CudaEngine(model);
        Assert.Equal(CudaMemoryRequirements.Weights(model), engine.AllocatedBytes);
    }

    /// <summary>
    /// With less free memory than the weights need, Auto loads the model on the CPU and says why, Cuda fails with
    /// <see cref="AcceleratorUnavailableException"/> over the <see cref="CudaOutOfMemoryException"/>, the partial upload
    /// is freed, and once memory is back the same model loads on the GPU.
    /// </summary>
    [Fact]
    public void FullGpuFallsBackToTheCpuAndRecovers()
    {
        (CudaContext ctx, _) = Gpu.Require();
        string path = QuantizedFixtures.Llama3;
        long need = CudaMemoryRequirements.Weights(QuantizedModelReader.Read(path));
        using (Hold(ctx, leave: need / 2))
        {
            long before = ctx.MemoryInfo.Free;
            Assert.True(before < need, $"{before} bytes free after filling, the weights need {need}");
            using (IInferenceEngine cpu = EngineLoader.Load(path, new EngineLoadOptions { Backend = EngineBackend.Auto }))
            {
                Assert.Equal("cpu", cpu.Description.Backend);
                Assert.Contains("too little memory", AcceleratorBackends.LastFallbackReason ?? string.Empty, StringComparison.Ordinal);
            }

            AcceleratorUnavailableException e = Assert.Throws<AcceleratorUnavailableException>(
                () => EngineLoader.Load(path, new EngineLoadOptions { Backend = EngineBackend.Cuda }));
            CudaOutOfMemoryException oom = Assert.IsType<CudaOutOfMemoryException>(e.InnerException);
            Assert.Equal("CUDA_ERROR_OUT_OF_MEMORY", oom.ErrorName);
            Assert.Contains(CudaMemoryRequirements.Format(need), oom.Message, StringComparison.Ordinal);
            Assert.IsType<CudaOutOfMemoryException>(oom.InnerException);

            // The driver hands memory out in 2 MiB pages: what the failed uploads took must all be back.
            Assert.True(ctx.MemoryInfo.Free >= before - (4 << 20), $"free memory went from {before} to {ctx.MemoryInfo.Free} bytes");
        }

        using IInferenceEngine gpu = EngineLoader.Load(path, new EngineLoadOptions { Backend = EngineBackend.Cuda });
        Assert.Equal("cuda", gpu.Description.Backend);
    }

    /// <summary>
    /// A session that does not fit fails with a <see cref="CudaOutOfMemoryException"/> naming its KV cache; the engine is
    /// unharmed, and a session created once memory is back runs.
    /// </summary>
    [Fact]
    public void SessionThatDoesNotFitSaysWhy()
    {
        (CudaContext ctx, _) = Gpu.Require();
        QuantizedModel model = QuantizedModelReader.Read(QuantizedFixtures.Llama3);
        using var engine = new CudaEngine(model, new CudaEngineOptions { KvCache = CudaKvCacheFormat.Float32 });
        int context = model.Config.MaxPositions;
        using (Hold(ctx, leave: 0))
        {
            CudaOutOfMemoryException e = Assert.Throws<CudaOutOfMemoryException>(() => engine.CreateCudaSession(context));
            Assert.Contains($"{context}-token session", e.Message, StringComparison.Ordinal);
            Assert.Contains(CudaMemoryRequirements.Format(CudaMemoryRequirements.KvCache(model.Config, context, CudaKvCacheFormat.Float32)), e.Message, StringComparison.Ordinal);
        }

        using CudaSession session = engine.CreateCudaSession(context);
        var logits = new float[model.Config.VocabularySize];
        session.Forward([1, 2, 3], logits);
        Assert.All(logits, v => Assert.True(float.IsFinite(v)));
    }

    /// <summary>Allocates device memory until at most <paramref name="leave"/> bytes (rounded to the 1 MiB step) are free.</summary>
    private static Held Hold(CudaContext ctx, long leave)
    {
        var held = new Held();
        try
        {
            for (long chunk = 1L << 30; chunk >= 1 << 20; chunk /= 2)
            {
                while (ctx.MemoryInfo.Free - chunk >= leave)
                {
                    try
                    {
                        held.Buffers.Add(DeviceBuffer.Allocate(ctx, chunk));
                    }
                    catch (CudaOutOfMemoryException)
                    {
                        break; // free memory is reported in pages; this size no longer fits
                    }
                }
            }
        }
        catch
        {
            held.Dispose();
            throw;
        }

        return held;
    }

    private sealed class Held : IDisposable
    {
        public List<DeviceBuffer> Buffers { get; } = [];

        public void Dispose()
        {
            foreach (DeviceBuffer b in Buffers)
            {
                b.Dispose();
            }

            Buffers.Clear();
        }
    }
}
