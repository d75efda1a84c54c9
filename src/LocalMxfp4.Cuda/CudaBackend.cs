using LocalMxfp4.Engine.Contract;
using LocalMxfp4.Engine.Loading;
using LocalMxfp4.Models.Quantized;

[assembly: AcceleratorBackend(typeof(LocalMxfp4.Cuda.CudaBackend))]

namespace LocalMxfp4.Cuda;

/// <summary>
/// Plugs the CUDA engine into <see cref="EngineLoader"/>: <c>Backend = Cuda</c> loads it (or fails with
/// <see cref="AcceleratorUnavailableException"/> saying why); <c>Auto</c> uses it when a GPU, the driver and the kernels
/// are present, the model is an MXFP4 model and its weights fit in the GPU's free memory, else the CPU (<see cref="AcceleratorBackends.LastFallbackReason"/>).
/// Found automatically when this assembly ships with the application.
/// </summary>
public sealed class CudaBackend : IAcceleratorBackend
{
    /// <inheritdoc />
    public EngineBackend Backend => EngineBackend.Cuda;

    /// <summary>Options for engines this backend creates (the default: device 0, bf16 KV cache, graphs); <see cref="EngineLoadOptions.Device"/> overrides the device.</summary>
    public static CudaEngineOptions DefaultOptions { get; set; } = new();

    /// <summary>Null when CUDA can run here on the default device, else the reason (no driver, no device, no kernels).</summary>
    public static string? Probe() => Probe(DefaultOptions.Device);

    /// <summary>Null when CUDA can run here on device <paramref name="device"/>, else the reason (no driver, no such device, no kernels).</summary>
    public static string? Probe(int device)
    {
        try
        {
            using CudaContext context = CudaContext.Create(device);
            using CudaKernels kernels = CudaKernels.Load(context);
            return null;
        }
        catch (CudaUnavailableException e)
        {
            return e.Reason;
        }
        catch (CudaException e)
        {
            return e.Message;
        }
    }

    /// <inheritdoc />
    public IInferenceEngine Load(string path, EngineLoadOptions options)
    {
        if (!QuantizedModelReader.IsQuantized(path))
        {
            throw new AcceleratorUnavailableException(EngineBackend.Cuda, "the CUDA backend runs MXFP4 models written by `lmx quantize`; this is a float checkpoint.");
        }

        CudaEngineOptions engineOptions = options.Device is int device ? DefaultOptions with { Device = device } : DefaultOptions;
        if (Probe(engineOptions.Device) is string reason)
        {
            throw new AcceleratorUnavailableException(EngineBackend.Cuda, reason);
        }

        QuantizedModel model = QuantizedModelReader.Read(path);
        try
        {
            return new CudaEngine(model, engineOptions);
        }
        catch (CudaUnavailableException e)
        {
            throw new AcceleratorUnavailableException(EngineBackend.Cuda, e.Reason, e);
        }
        catch (CudaOutOfMemoryException e)
        {
            // The GPU is there but the model does not fit (other processes may hold memory): Auto runs it on the CPU
            // instead of failing, and Cuda reports it like any other reason the accelerator cannot run it.
            throw new AcceleratorUnavailableException(EngineBackend.Cuda, e.Message, e);
        }
        catch (NotSupportedException e) when (e is not AcceleratorUnavailableException)
        {
            throw new AcceleratorUnavailableException(EngineBackend.Cuda, e.Message, e);
        }
    }
}
