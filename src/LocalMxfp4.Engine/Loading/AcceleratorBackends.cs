using System.Reflection;
using LocalMxfp4.Engine.Contract;

namespace LocalMxfp4.Engine.Loading;

/// <summary>
/// A backend that runs models on an accelerator (the CUDA backend in <c>LocalMxfp4.Cuda</c>). The engine library does
/// not depend on it: an assembly declares its backend with <see cref="AcceleratorBackendAttribute"/>, and
/// <see cref="AcceleratorBackends"/> finds it when the application ships that assembly.
/// </summary>
public interface IAcceleratorBackend
{
    /// <summary>The backend this implements (e.g. <see cref="EngineBackend.Cuda"/>).</summary>
    EngineBackend Backend { get; }

    /// <summary>
    /// Loads the model at <paramref name="path"/>. Throws <see cref="AcceleratorUnavailableException"/> when the backend
    /// cannot run it here (no driver, no device, no kernels, a model format it does not run); other exceptions are real
    /// errors (a bad model file, out of memory).
    /// </summary>
    IInferenceEngine Load(string path, EngineLoadOptions options);
}

/// <summary>Declares the <see cref="IAcceleratorBackend"/> an assembly provides (a public type with a parameterless constructor).</summary>
/// <param name="backendType">The implementing type.</param>
[AttributeUsage(AttributeTargets.Assembly, AllowMultiple = true)]
public sealed class AcceleratorBackendAttribute(Type backendType) : Attribute
{
    /// <summary>The implementing type.</summary>
    public Type BackendType { get; } = backendType;
}

/// <summary>An accelerator backend was asked for but cannot run here; <see cref="Reason"/> says why in one line.</summary>
public sealed class AcceleratorUnavailableException : NotSupportedException
{
    /// <summary>Creates the exception.</summary>
    public AcceleratorUnavailableException(EngineBackend backend, string reason, Exception? inner = null)
        : base($"The {backend.ToString().ToUpperInvariant()} backend cannot run: {reason}", inner)
    {
        Backend = backend;
        Reason = reason;
    }

    /// <summary>The backend asked for.</summary>
    public EngineBackend Backend { get; }

    /// <summary>Why it cannot run.</summary>
    public string Reason { get; }
}

/// <summary>
/// Finds accelerator backends and records why <see cref="EngineBackend.Auto"/> fell back to the CPU.
/// Backends come from <see cref="Register"/> or, failing that, from the known backend assemblies shipped with the
/// application (<c>LocalMxfp4.Cuda</c>), loaded by name.
/// </summary>
public static class AcceleratorBackends
{
    /// <summary>The assembly that holds the CUDA backend.</summary>
    public const string CudaAssemblyName = "LocalMxfp4.Cuda";

    private static readonly object Gate = new();
    private static readonly Dictionary<EngineBackend, IAcceleratorBackend> Registered = [];
    private static readonly Dictionary<EngineBackend, string> DiscoveryFailures = [];
    private static string? s_lastFallbackReason;

    /// <summary>Why the most recent <see cref="EngineBackend.Auto"/> load ran on the CPU (null when it used an accelerator or none ran yet).</summary>
    public static string? LastFallbackReason => Volatile.Read(ref s_lastFallbackReason);

    /// <summary>Registers <paramref name="backend"/> (replacing an earlier one for the same <see cref="IAcceleratorBackend.Backend"/>).</summary>
    public static void Register(IAcceleratorBackend backend)
    {
        ArgumentNullException.ThrowIfNull(backend);
        lock (Gate)
        {
            Registered[backend.Backend] = backend;
            DiscoveryFailures.Remove(backend.Backend);
        }
    }

    /// <summary>The backend for <paramref name="backend"/>, or null with the reason it is missing.</summary>
    public static IAcceleratorBackend? Find(EngineBackend backend, out string? reason)
    {
        lock (Gate)
        {
            if (Registered.TryGetValue(backend, out IAcceleratorBackend? found))
            {
                reason = null;
                return found;
            }

            if (DiscoveryFailures.TryGetValue(backend, out reason))
            {
                return null;
            }

            if (backend != EngineBackend.Cuda)
            {
                reason = $"{backend} is not an accelerator backend.";
                return null;
            }

            try
            {
                Assembly assembly = Assembly.Load(new AssemblyName(CudaAssemblyName));
                foreach (AcceleratorBackendAttribute a in assembly.GetCustomAttributes<AcceleratorBackendAttribute>())
                {
                    if (Activator.CreateInstance(a.BackendType) is IAcceleratorBackend b)
                    {
                        Registered[b.Backend] = b;
                    }
                }
            }
            catch (Exception e) when (e is FileNotFoundException or FileLoadException or BadImageFormatException)
            {
                reason = $"the {CudaAssemblyName} assembly is not part of this application (reference the LocalMxfp4.Cuda package).";
                DiscoveryFailures[backend] = reason;
                return null;
            }

            if (Registered.TryGetValue(backend, out found))
            {
                reason = null;
                return found;
            }

            reason = $"{CudaAssemblyName} declares no {backend} backend.";
            DiscoveryFailures[backend] = reason;
            return null;
        }
    }

    /// <summary>
    /// The accelerated engine for <paramref name="options"/>.Backend: Cuda loads it or throws
    /// <see cref="AcceleratorUnavailableException"/>; Auto returns null (and records <see cref="LastFallbackReason"/>)
    /// when the accelerator cannot run the model; Cpu returns null.
    /// </summary>
    public static IInferenceEngine? TryLoad(string path, EngineLoadOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Backend == EngineBackend.Cpu)
        {
            return null;
        }

        IAcceleratorBackend? backend = Find(EngineBackend.Cuda, out string? reason);
        if (backend is null)
        {
            return Unavailable(options, new AcceleratorUnavailableException(EngineBackend.Cuda, reason!));
        }

        try
        {
            IInferenceEngine engine = backend.Load(path, options);
            Volatile.Write(ref s_lastFallbackReason, null);
            return engine;
        }
        catch (AcceleratorUnavailableException e)
        {
            return Unavailable(options, e);
        }
    }

    private static IInferenceEngine? Unavailable(EngineLoadOptions options, AcceleratorUnavailableException e)
    {
        if (options.Backend == EngineBackend.Cuda)
        {
            throw e;
        }

        Volatile.Write(ref s_lastFallbackReason, e.Reason);
        return null;
    }
}
