using LocalMxfp4.Engine.Contract;

namespace LocalMxfp4.Engine.Loading;

/// <summary>Which backend runs a model.</summary>
public enum EngineBackend
{
    /// <summary>CUDA when a usable GPU and kernels are present, else CPU.</summary>
    Auto = 0,

    /// <summary>The C# CPU engine.</summary>
    Cpu = 1,

    /// <summary>The CUDA engine; loading fails with a diagnostic when it cannot run.</summary>
    Cuda = 2,
}

/// <summary>How to load a model.</summary>
public sealed record EngineLoadOptions
{
    /// <summary>The backend.</summary>
    public EngineBackend Backend { get; init; } = EngineBackend.Auto;

    /// <summary>CPU worker threads (0 = one per core).</summary>
    public int Threads { get; init; }

    /// <summary>The accelerator device's ordinal (the CUDA device index); null: the backend's default (device 0).</summary>
    public int? Device { get; init; }
}

/// <summary>
/// The one entry point that turns a model path into a running engine, whatever its format: a float checkpoint
/// (F32/F16/BF16) runs on the float reference engine; an MXFP4 model written by <c>lmx quantize</c> runs W4A4.
/// </summary>
public static class EngineLoader
{
    /// <summary>Loads the model at <paramref name="path"/> (a model directory or a safetensors file in one).</summary>
    public static IInferenceEngine Load(string path, EngineLoadOptions? options = null)
    {
        options ??= new EngineLoadOptions();
        // Cuda: the accelerated engine or AcceleratorUnavailableException; Auto: it when it can run, else the CPU
        // (AcceleratorBackends.LastFallbackReason says why).
        if (AcceleratorBackends.TryLoad(path, options) is IInferenceEngine accelerated)
        {
            return accelerated;
        }

        return LocalMxfp4.Models.Quantized.QuantizedModelReader.IsQuantized(path)
            ? QuantizedModelLoader.LoadEngine(path, options.Threads)
            : FloatModelLoader.LoadEngine(path, options.Threads);
    }
}
