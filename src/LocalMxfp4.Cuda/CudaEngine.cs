using LocalMxfp4.Engine.Contract;
using LocalMxfp4.Models.Configuration;
using LocalMxfp4.Models.Quantized;

namespace LocalMxfp4.Cuda;

/// <summary>Precision of the CUDA engine's KV cache.</summary>
public enum CudaKvCacheFormat
{
    /// <summary>bfloat16 keys and values (half the bytes; what DuQuant++ evaluates, W4A4KV16). Differs from the CPU engine's float cache by bf16 rounding.</summary>
    BFloat16 = 0,

    /// <summary>float32, the CPU engine's precision: logits match the CPU W4A4 engine to float rounding.</summary>
    Float32 = 1,
}

/// <summary>Which kernel computes the W4A4 decode GEMV (one token).</summary>
public enum CudaGemvKernel
{
    /// <summary><see cref="TensorCoreFp8"/> where the GPU and the kernel build have it, else <see cref="Dp4a"/>.</summary>
    Auto = 0,

    /// <summary>Nibble → int8 table lookup and dp4a on the CUDA cores (any GPU the kernels are built for).</summary>
    Dp4a = 1,

    /// <summary>Nibbles moved into e4m3 bytes and multiplied on the FP8 tensor cores (compute capability 8.9+, kernels built with CUDA 12.4+). Same exact block sums.</summary>
    TensorCoreFp8 = 2,
}

/// <summary>Settings of a <see cref="CudaEngine"/>.</summary>
public sealed record CudaEngineOptions
{
    /// <summary>CUDA device ordinal.</summary>
    public int Device { get; init; }

    /// <summary>KV cache precision.</summary>
    public CudaKvCacheFormat KvCache { get; init; } = CudaKvCacheFormat.BFloat16;

    /// <summary>Most tokens one prefill pass processes (longer prompts run in slices of this many).</summary>
    public int MaxBatchTokens { get; init; } = 512;

    /// <summary>Replay each decode step as one CUDA graph (else launch its kernels one by one).</summary>
    public bool UseGraphs { get; init; } = true;

    /// <summary>Programmatic dependent launch between consecutive kernels on compute capability 9.0+ (see <see cref="CudaStream.ProgrammaticLaunch"/>).</summary>
    public bool ProgrammaticLaunch { get; init; } = true;

    /// <summary>The decode GEMV kernel (<see cref="CudaGemvKernel.Auto"/>: the fastest one this GPU has).</summary>
    public CudaGemvKernel Gemv { get; init; } = CudaGemvKernel.Auto;
}

/// <summary>
/// The W4A4 MXFP4 engine on an NVIDIA GPU: the model's weights live on the device, and every token's forward pass runs
/// there — embedding gather, fused RMSNorm + block transform + MXFP4 activation quantization, exact-integer W4A4 GEMV
/// (decode) or tensor-core GEMM (prefill), RoPE with the KV-cache write, flash-decoding attention, the lm_head, and greedy
/// or temperature sampling — one CUDA graph per decode step. Same contract and numerics as the CPU W4A4 engine.
/// </summary>
public sealed class CudaEngine : IInferenceEngine
{
    private readonly List<IDisposable> _owned = [];
    private int _disposed;

    /// <summary>Uploads <paramref name="model"/> to the GPU.</summary>
    /// <exception cref="CudaUnavailableException">No NVIDIA driver, no device, or no kernels for it.</exception>
    /// <exception cref="CudaOutOfMemoryException">The weights do not fit; the message says how much they need and how much was free.</exception>
    /// <exception cref="NotSupportedException">
    /// The model's shape is outside what the kernels handle, or <see cref="CudaEngineOptions.Gemv"/> names a kernel this
    /// GPU or kernel build lacks (checked here, before any weight is uploaded, rather than at the first session).
    /// </exception>
    public CudaEngine(QuantizedModel model, CudaEngineOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        Options = options ?? new CudaEngineOptions();
        ArgumentOutOfRangeException.ThrowIfLessThan(Options.MaxBatchTokens, 1);
        LlamaConfig c = model.Config;
        CheckShape(c);
        Config = c;
        ActivationRule = (int)model.Quantization.ActivationScaleRule;
        Context = CudaContext.Create(Options.Device);
        (long free, long total) = (0, Context.TotalMemory);
        try
        {
            free = Context.MemoryInfo.Free;
            Kernels = CudaKernels.Load(Context);
            _owned.Add(Kernels);
            GemvKernel = Kernels.Resolve(Options.Gemv);
            var layers = new DeviceLayer[model.Layers.Count];
            for (int i = 0; i < layers.Length; i++)
            {
                layers[i] = new DeviceLayer(Context, model.Layers[i]);
                _owned.Add(layers[i]);
            }

            Layers = layers;
            FinalNorm = Own(DeviceBuffer.Upload<float>(Context, model.FinalNorm));
            Embedding = Own(UploadBf16(model.Embedding, out bool embeddingExact));
            bool headExact = true;
            LmHead = model.LmHead is null ? Embedding : Own(UploadBf16(model.LmHead, out headExact));
            HeadIsExact = embeddingExact && headExact;
        }
        catch (CudaOutOfMemoryException e)
        {
            string gpu = Context.Name;
            Dispose();
            throw new CudaOutOfMemoryException(e, $"{gpu} has too little memory for this model: its weights need {CudaMemoryRequirements.Format(CudaMemoryRequirements.Weights(model))} on the GPU and {CudaMemoryRequirements.Format(free)} of {CudaMemoryRequirements.Format(total)} was free ({e.ErrorName} in {e.Call}).");
        }
        catch
        {
            Dispose();
            throw;
        }

        Description = new EngineDescription("cuda", "mxfp4", "mxfp4", 1);
    }

    /// <summary>The settings.</summary>
    public CudaEngineOptions Options { get; }

    /// <inheritdoc />
    public LlamaConfig Config { get; }

    /// <inheritdoc />
    public EngineDescription Description { get; }

    /// <summary>The GPU.</summary>
    public CudaContext Context { get; }

    /// <summary>The loaded kernels.</summary>
    public CudaKernels Kernels { get; } = null!;

    /// <summary>The decode GEMV kernel <see cref="CudaEngineOptions.Gemv"/> resolved to on this GPU; new sessions start with it.</summary>
    public CudaGemvKernel GemvKernel { get; }

    /// <summary>True when the embedding and lm_head were exactly representable in bf16 (models written by <c>lmx quantize</c> are).</summary>
    public bool HeadIsExact { get; }

    /// <summary>Bytes the engine holds on the device: weights, norms, transforms, embedding and lm_head (sessions allocate their own).</summary>
    public long AllocatedBytes => Layers.Sum(l => l.AllocatedBytes) + FinalNorm.Bytes + Embedding.Bytes + (ReferenceEquals(LmHead, Embedding) ? 0 : LmHead.Bytes);

    /// <summary>Bytes of weights one decode step streams: every MXFP4 linear (nibbles + scales) and the bf16 lm_head.</summary>
    public long WeightBytesPerToken => Layers.Sum(l => l.WeightBytes) + LmHead.Bytes;

    internal IReadOnlyList<DeviceLayer> Layers { get; } = [];

    internal DeviceBuffer FinalNorm { get; } = null!;

    internal DeviceBuffer Embedding { get; } = null!;

    internal DeviceBuffer LmHead { get; } = null!;

    internal int ActivationRule { get; }

    /// <summary>Reads the quantized model at <paramref name="path"/> and uploads it.</summary>
    public static CudaEngine Load(string path, CudaEngineOptions? options = null) => new(QuantizedModelReader.Read(path), options);

    /// <inheritdoc />
    public IInferenceSession CreateSession(int contextLength) => CreateCudaSession(contextLength);

    /// <summary>Creates a session (KV cache on the GPU) with the CUDA-only operations (device sampling, graph decode loop).</summary>
    /// <exception cref="CudaOutOfMemoryException">
    /// The session's KV cache and work buffers do not fit; the message gives the KV cache's size and the free memory
    /// (<see cref="CudaMemoryRequirements.KvCache"/> sizes a context beforehand).
    /// </exception>
    public CudaSession CreateCudaSession(int contextLength)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        if (contextLength <= 0 || contextLength > Config.MaxPositions)
        {
            throw new ArgumentOutOfRangeException(nameof(contextLength), contextLength, $"The context must be between 1 and the model's max_position_embeddings ({Config.MaxPositions}).");
        }

        return new CudaSession(this, contextLength);
    }

    /// <summary>Frees the device memory and releases the context.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        if (!Context.IsClosed)
        {
            Context.MakeCurrent();
        }

        for (int i = _owned.Count - 1; i >= 0; i--)
        {
            _owned[i].Dispose();
        }

        Context?.Dispose();
    }

    private static void CheckShape(LlamaConfig c)
    {
        int group = c.HeadCount / c.KeyValueHeadCount;
        string? problem =
            c.HeadCount % c.KeyValueHeadCount != 0 ? "query heads must be a multiple of key/value heads"
            : group > 8 ? $"GQA groups of {group} query heads (the attention kernel handles up to 8)"
            : c.HeadDim > 256 || c.HeadDim % 2 != 0 ? $"head_dim {c.HeadDim} (even, at most 256)"
            : null;
        if (problem is not null)
        {
            throw new NotSupportedException("The CUDA engine does not support this model: " + problem + ".");
        }
    }

    private T Own<T>(T item)
        where T : IDisposable
    {
        _owned.Add(item);
        return item;
    }

    private DeviceBuffer UploadBf16(float[] values, out bool exact)
    {
        var bf16 = new ushort[values.Length];
        int inexact = 0;
        Parallel.For(0, (values.Length + 65535) / 65536, chunk =>
        {
            int start = chunk * 65536, end = Math.Min(values.Length, start + 65536), bad = 0;
            for (int i = start; i < end; i++)
            {
                uint bits = BitConverter.SingleToUInt32Bits(values[i]);
                if ((bits & 0xFFFF) != 0)
                {
                    bad++;
                    bits += 0x7FFF + ((bits >> 16) & 1); // round to nearest even (finite inputs)
                }

                bf16[i] = (ushort)(bits >> 16);
            }

            if (bad != 0)
            {
                Interlocked.Add(ref inexact, bad);
            }
        });
        exact = inexact == 0;
        return DeviceBuffer.Upload<ushort>(Context, bf16);
    }
}
