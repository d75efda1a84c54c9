using System.Reflection;
using System.Runtime.InteropServices;

namespace LocalMxfp4.Cuda.Interop;

/// <summary>
/// The CUDA driver API functions the backend uses, imported from <c>libcuda.so.1</c> (Linux) or <c>nvcuda.dll</c>
/// (Windows) — the driver itself, not the CUDA runtime, so nothing beyond the NVIDIA driver needs to be installed.
/// Every call returns a <see cref="CudaResult"/>; <see cref="Check"/> turns failures into <see cref="CudaException"/>.
/// </summary>
internal static unsafe partial class CudaDriver
{
    private const string Library = "localmxfp4-cuda-driver";

    static CudaDriver() => NativeLibrary.SetDllImportResolver(typeof(CudaDriver).Assembly, Resolve);

    private static IntPtr Resolve(string name, Assembly assembly, DllImportSearchPath? path)
    {
        if (name != Library)
        {
            return IntPtr.Zero;
        }

        string[] candidates = OperatingSystem.IsWindows() ? ["nvcuda.dll"] : ["libcuda.so.1", "libcuda.so"];
        foreach (string candidate in candidates)
        {
            if (NativeLibrary.TryLoad(candidate, assembly, path, out IntPtr handle))
            {
                return handle;
            }
        }

        throw new DllNotFoundException($"The NVIDIA driver library ({string.Join(" or ", candidates)}) was not found: no NVIDIA driver is installed.");
    }

    /// <summary>Throws <see cref="CudaException"/> (with the error's CUDA name) unless <paramref name="result"/> is success.</summary>
    public static void Check(CudaResult result, string call)
    {
        if (result != CudaResult.Success)
        {
            throw CudaException.From(result, call);
        }
    }

    /// <summary>The driver's name for an error code (e.g. CUDA_ERROR_OUT_OF_MEMORY), or null.</summary>
    public static string? ErrorName(CudaResult result)
    {
        byte* text = null;
        return cuGetErrorName(result, &text) == CudaResult.Success && text != null ? Marshal.PtrToStringUTF8((IntPtr)text) : null;
    }

    /// <summary>The driver's description of an error code, or null.</summary>
    public static string? ErrorString(CudaResult result)
    {
        byte* text = null;
        return cuGetErrorString(result, &text) == CudaResult.Success && text != null ? Marshal.PtrToStringUTF8((IntPtr)text) : null;
    }

    [LibraryImport(Library)] public static partial CudaResult cuGetErrorName(CudaResult error, byte** name);
    [LibraryImport(Library)] public static partial CudaResult cuGetErrorString(CudaResult error, byte** text);
    [LibraryImport(Library)] public static partial CudaResult cuInit(uint flags);
    [LibraryImport(Library)] public static partial CudaResult cuDriverGetVersion(int* version);
    [LibraryImport(Library)] public static partial CudaResult cuDeviceGetCount(int* count);
    [LibraryImport(Library)] public static partial CudaResult cuDeviceGet(int* device, int ordinal);
    [LibraryImport(Library)] public static partial CudaResult cuDeviceGetName(byte* name, int length, int device);
    [LibraryImport(Library)] public static partial CudaResult cuDeviceGetAttribute(int* value, CudaDeviceAttribute attribute, int device);
    [LibraryImport(Library, EntryPoint = "cuDeviceTotalMem_v2")] public static partial CudaResult cuDeviceTotalMem(nuint* bytes, int device);
    [LibraryImport(Library)] public static partial CudaResult cuDevicePrimaryCtxRetain(IntPtr* context, int device);
    [LibraryImport(Library, EntryPoint = "cuDevicePrimaryCtxRelease_v2")] public static partial CudaResult cuDevicePrimaryCtxRelease(int device);
    [LibraryImport(Library)] public static partial CudaResult cuCtxSetCurrent(IntPtr context);
    [LibraryImport(Library)] public static partial CudaResult cuCtxSynchronize();
    [LibraryImport(Library, EntryPoint = "cuMemGetInfo_v2")] public static partial CudaResult cuMemGetInfo(nuint* free, nuint* total);
    [LibraryImport(Library)] public static partial CudaResult cuModuleLoadData(IntPtr* module, void* image);
    [LibraryImport(Library)] public static partial CudaResult cuModuleUnload(IntPtr module);
    [LibraryImport(Library, StringMarshalling = StringMarshalling.Utf8)] public static partial CudaResult cuModuleGetFunction(IntPtr* function, IntPtr module, string name);
    [LibraryImport(Library)] public static partial CudaResult cuFuncSetAttribute(IntPtr function, CudaFunctionAttribute attribute, int value);
    [LibraryImport(Library)] public static partial CudaResult cuFuncGetAttribute(int* value, CudaFunctionAttribute attribute, IntPtr function);
    [LibraryImport(Library)]
    public static partial CudaResult cuLaunchKernel(IntPtr function, uint gridX, uint gridY, uint gridZ, uint blockX, uint blockY, uint blockZ,
        uint sharedBytes, IntPtr stream, void** parameters, void** extra);
    [LibraryImport(Library)] public static partial CudaResult cuLaunchKernelEx(LaunchConfig* config, IntPtr function, void** parameters, void** extra);
    [LibraryImport(Library, EntryPoint = "cuMemAlloc_v2")] public static partial CudaResult cuMemAlloc(ulong* pointer, nuint bytes);
    [LibraryImport(Library, EntryPoint = "cuMemFree_v2")] public static partial CudaResult cuMemFree(ulong pointer);
    [LibraryImport(Library, EntryPoint = "cuMemAllocHost_v2")] public static partial CudaResult cuMemAllocHost(void** pointer, nuint bytes);
    [LibraryImport(Library)] public static partial CudaResult cuMemFreeHost(void* pointer);
    [LibraryImport(Library, EntryPoint = "cuMemcpyHtoD_v2")] public static partial CudaResult cuMemcpyHtoD(ulong destination, void* source, nuint bytes);
    [LibraryImport(Library, EntryPoint = "cuMemcpyDtoH_v2")] public static partial CudaResult cuMemcpyDtoH(void* destination, ulong source, nuint bytes);
    [LibraryImport(Library, EntryPoint = "cuMemcpyHtoDAsync_v2")] public static partial CudaResult cuMemcpyHtoDAsync(ulong destination, void* source, nuint bytes, IntPtr stream);
    [LibraryImport(Library, EntryPoint = "cuMemcpyDtoHAsync_v2")] public static partial CudaResult cuMemcpyDtoHAsync(void* destination, ulong source, nuint bytes, IntPtr stream);
    [LibraryImport(Library, EntryPoint = "cuMemcpyDtoDAsync_v2")] public static partial CudaResult cuMemcpyDtoDAsync(ulong destination, ulong source, nuint bytes, IntPtr stream);
    [LibraryImport(Library, EntryPoint = "cuMemsetD8Async")] public static partial CudaResult cuMemsetD8Async(ulong destination, byte value, nuint count, IntPtr stream);
    [LibraryImport(Library, EntryPoint = "cuMemsetD32Async")] public static partial CudaResult cuMemsetD32Async(ulong destination, uint value, nuint count, IntPtr stream);
    [LibraryImport(Library)] public static partial CudaResult cuStreamCreate(IntPtr* stream, uint flags);
    [LibraryImport(Library, EntryPoint = "cuStreamDestroy_v2")] public static partial CudaResult cuStreamDestroy(IntPtr stream);
    [LibraryImport(Library)] public static partial CudaResult cuStreamSynchronize(IntPtr stream);
    [LibraryImport(Library, EntryPoint = "cuStreamBeginCapture_v2")] public static partial CudaResult cuStreamBeginCapture(IntPtr stream, CudaStreamCaptureMode mode);
    [LibraryImport(Library)] public static partial CudaResult cuStreamEndCapture(IntPtr stream, IntPtr* graph);
    [LibraryImport(Library)] public static partial CudaResult cuGraphInstantiateWithFlags(IntPtr* exec, IntPtr graph, ulong flags);
    [LibraryImport(Library)] public static partial CudaResult cuGraphLaunch(IntPtr exec, IntPtr stream);
    [LibraryImport(Library)] public static partial CudaResult cuGraphExecDestroy(IntPtr exec);
    [LibraryImport(Library)] public static partial CudaResult cuGraphDestroy(IntPtr graph);
    [LibraryImport(Library)] public static partial CudaResult cuGraphGetNodes(IntPtr graph, IntPtr* nodes, nuint* count);
    [LibraryImport(Library)] public static partial CudaResult cuEventCreate(IntPtr* @event, uint flags);
    [LibraryImport(Library, EntryPoint = "cuEventDestroy_v2")] public static partial CudaResult cuEventDestroy(IntPtr @event);
    [LibraryImport(Library)] public static partial CudaResult cuEventRecord(IntPtr @event, IntPtr stream);
    [LibraryImport(Library)] public static partial CudaResult cuEventRecordWithFlags(IntPtr @event, IntPtr stream, uint flags);
    [LibraryImport(Library)] public static partial CudaResult cuEventSynchronize(IntPtr @event);
    [LibraryImport(Library)] public static partial CudaResult cuEventElapsedTime(float* milliseconds, IntPtr start, IntPtr end);
}

/// <summary><c>CUlaunchConfig</c>.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct LaunchConfig
{
    public uint GridX, GridY, GridZ, BlockX, BlockY, BlockZ, SharedBytes;
    public IntPtr Stream;
    public LaunchAttribute* Attributes;
    public uint AttributeCount;
}

/// <summary><c>CUlaunchAttribute</c>: the id, padding, and a 64-byte value union (only its first int is used here).</summary>
[StructLayout(LayoutKind.Explicit, Size = 72)]
internal struct LaunchAttribute
{
    /// <summary>CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION.</summary>
    public const int ProgrammaticStreamSerialization = 6;

    [FieldOffset(0)]
    public int Id;

    [FieldOffset(8)]
    public int Value;
}

/// <summary>CUDA driver status codes (the values of <c>CUresult</c>); codes not listed keep their number.</summary>
public enum CudaResult
{
    /// <summary>CUDA_SUCCESS.</summary>
    Success = 0,

    /// <summary>CUDA_ERROR_INVALID_VALUE.</summary>
    InvalidValue = 1,

    /// <summary>CUDA_ERROR_OUT_OF_MEMORY.</summary>
    OutOfMemory = 2,

    /// <summary>CUDA_ERROR_NOT_INITIALIZED.</summary>
    NotInitialized = 3,

    /// <summary>CUDA_ERROR_DEINITIALIZED.</summary>
    Deinitialized = 4,

    /// <summary>CUDA_ERROR_NO_DEVICE.</summary>
    NoDevice = 100,

    /// <summary>CUDA_ERROR_INVALID_DEVICE.</summary>
    InvalidDevice = 101,

    /// <summary>CUDA_ERROR_INVALID_IMAGE.</summary>
    InvalidImage = 200,

    /// <summary>CUDA_ERROR_INVALID_CONTEXT.</summary>
    InvalidContext = 201,

    /// <summary>CUDA_ERROR_NO_BINARY_FOR_GPU.</summary>
    NoBinaryForGpu = 209,

    /// <summary>CUDA_ERROR_NOT_FOUND.</summary>
    NotFound = 500,

    /// <summary>CUDA_ERROR_ILLEGAL_ADDRESS.</summary>
    IllegalAddress = 700,

    /// <summary>CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES.</summary>
    LaunchOutOfResources = 701,

    /// <summary>CUDA_ERROR_LAUNCH_FAILED.</summary>
    LaunchFailed = 719,

    /// <summary>CUDA_ERROR_STREAM_CAPTURE_INVALIDATED.</summary>
    StreamCaptureInvalidated = 901,

    /// <summary>CUDA_ERROR_UNKNOWN.</summary>
    Unknown = 999,
}

/// <summary>The <c>CUdevice_attribute</c> values the backend reads.</summary>
internal enum CudaDeviceAttribute
{
    MaxSharedMemoryPerBlock = 8,
    ClockRate = 13,
    MultiprocessorCount = 16,
    MemoryClockRate = 36,
    GlobalMemoryBusWidth = 37,
    L2CacheSize = 38,
    ComputeCapabilityMajor = 75,
    ComputeCapabilityMinor = 76,
    MaxSharedMemoryPerBlockOptin = 97,
}

/// <summary>The <c>CUfunction_attribute</c> values the backend uses.</summary>
internal enum CudaFunctionAttribute
{
    NumRegisters = 4,
    MaxDynamicSharedSizeBytes = 8,
    PreferredSharedMemoryCarveout = 9,
}

/// <summary><c>CUstreamCaptureMode</c>.</summary>
internal enum CudaStreamCaptureMode
{
    Global = 0,
    ThreadLocal = 1,
    Relaxed = 2,
}
