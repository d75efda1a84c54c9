using LocalMxfp4.Cuda.Interop;

namespace LocalMxfp4.Cuda;

/// <summary>A CUDA driver call failed. <see cref="ErrorName"/> is the driver's name for the code (e.g. CUDA_ERROR_OUT_OF_MEMORY).</summary>
public class CudaException : Exception
{
    /// <summary>Creates an exception for <paramref name="result"/> returned by <paramref name="call"/>.</summary>
    public CudaException(CudaResult result, string errorName, string call, string message)
        : this(result, errorName, call, message, null)
    {
    }

    /// <summary>Creates an exception that restates <paramref name="inner"/> with what the caller was doing.</summary>
    public CudaException(CudaResult result, string errorName, string call, string message, Exception? inner)
        : base(message, inner)
    {
        Result = result;
        ErrorName = errorName;
        Call = call;
    }

    /// <summary>The status code.</summary>
    public CudaResult Result { get; }

    /// <summary>The CUDA name of the status code.</summary>
    public string ErrorName { get; }

    /// <summary>The driver function (and what it was doing) that failed.</summary>
    public string Call { get; }

    internal static CudaException From(CudaResult result, string call)
    {
        string name = CudaDriver.ErrorName(result) ?? $"CUDA error {(int)result}";
        string text = CudaDriver.ErrorString(result) ?? "no description";
        string message = $"{call} failed: {name} ({(int)result}): {text}";
        return result == CudaResult.OutOfMemory
            ? new CudaOutOfMemoryException(result, name, call, message)
            : new CudaException(result, name, call, message);
    }
}

/// <summary>The GPU ran out of memory (CUDA_ERROR_OUT_OF_MEMORY).</summary>
public sealed class CudaOutOfMemoryException : CudaException
{
    /// <summary>Creates the exception.</summary>
    public CudaOutOfMemoryException(CudaResult result, string errorName, string call, string message)
        : base(result, errorName, call, message)
    {
    }

    /// <summary>Restates <paramref name="inner"/> with <paramref name="message"/>: what needed the memory, and how much there was.</summary>
    public CudaOutOfMemoryException(CudaOutOfMemoryException inner, string message)
        : base(inner.Result, inner.ErrorName, inner.Call, message, inner)
    {
    }
}

/// <summary>
/// The CUDA backend cannot run here: no NVIDIA driver, no CUDA device, or no kernels for this GPU. <see cref="Reason"/>
/// says which, in one line.
/// </summary>
public sealed class CudaUnavailableException : Exception
{
    /// <summary>Creates the exception.</summary>
    public CudaUnavailableException(string reason, Exception? inner = null)
        : base("The CUDA backend is unavailable: " + reason, inner)
    {
        Reason = reason;
    }

    /// <summary>Why CUDA cannot be used.</summary>
    public string Reason { get; }
}
