using System.Runtime.InteropServices;
using System.Text;
using LocalMxfp4.Cuda.Interop;

namespace LocalMxfp4.Cuda;

/// <summary>
/// One GPU's primary context, retained for the lifetime of this object, with the device's description.
/// Every object created from it (modules, buffers, streams) makes it current before use, so it can be used from any thread.
/// </summary>
public sealed unsafe class CudaContext : IDisposable
{
    private static readonly object InitLock = new();
    private static bool s_initialised;
    private int _closed;

    private CudaContext(int device, IntPtr handle)
    {
        Device = device;
        Handle = handle;
        var name = new byte[256];
        fixed (byte* p = name)
        {
            CudaDriver.Check(CudaDriver.cuDeviceGetName(p, name.Length, device), "cuDeviceGetName");
        }

        Name = Encoding.UTF8.GetString(name, 0, Math.Max(0, Array.IndexOf(name, (byte)0)));
        ComputeCapability = new Version(Attribute(CudaDeviceAttribute.ComputeCapabilityMajor), Attribute(CudaDeviceAttribute.ComputeCapabilityMinor));
        Multiprocessors = Attribute(CudaDeviceAttribute.MultiprocessorCount);
        L2CacheBytes = Attribute(CudaDeviceAttribute.L2CacheSize);
        MaxSharedMemoryPerBlockOptin = Attribute(CudaDeviceAttribute.MaxSharedMemoryPerBlockOptin);
        nuint total;
        CudaDriver.Check(CudaDriver.cuDeviceTotalMem(&total, device), "cuDeviceTotalMem");
        TotalMemory = (long)total;
        int version;
        CudaDriver.Check(CudaDriver.cuDriverGetVersion(&version), "cuDriverGetVersion");
        DriverVersion = new Version(version / 1000, version % 1000 / 10);
    }

    /// <summary>The device ordinal.</summary>
    public int Device { get; }

    /// <summary>The <c>CUcontext</c>.</summary>
    public IntPtr Handle { get; }

    /// <summary>The GPU's name, e.g. "NVIDIA H100 80GB HBM3".</summary>
    public string Name { get; }

    /// <summary>Compute capability (9.0 for Hopper).</summary>
    public Version ComputeCapability { get; }

    /// <summary>Streaming multiprocessors.</summary>
    public int Multiprocessors { get; }

    /// <summary>L2 cache size in bytes.</summary>
    public int L2CacheBytes { get; }

    /// <summary>Largest shared memory a block may opt into.</summary>
    public int MaxSharedMemoryPerBlockOptin { get; }

    /// <summary>Device memory in bytes.</summary>
    public long TotalMemory { get; }

    /// <summary>The CUDA version the driver supports (e.g. 13.0).</summary>
    public Version DriverVersion { get; }

    /// <summary>True after <see cref="Dispose"/>.</summary>
    public bool IsClosed => Volatile.Read(ref _closed) != 0;

    /// <summary>Free and total device memory now.</summary>
    public (long Free, long Total) MemoryInfo
    {
        get
        {
            MakeCurrent();
            nuint free, total;
            CudaDriver.Check(CudaDriver.cuMemGetInfo(&free, &total), "cuMemGetInfo");
            return ((long)free, (long)total);
        }
    }

    /// <summary>The number of CUDA devices; throws <see cref="CudaUnavailableException"/> when there is no driver or device.</summary>
    public static int DeviceCount()
    {
        Initialise();
        int count;
        CudaDriver.Check(CudaDriver.cuDeviceGetCount(&count), "cuDeviceGetCount");
        return count;
    }

    /// <summary>
    /// Retains the primary context of device <paramref name="ordinal"/>. Throws <see cref="CudaUnavailableException"/>
    /// when no NVIDIA driver or no such device exists.
    /// </summary>
    public static CudaContext Create(int ordinal = 0)
    {
        int count = DeviceCount();
        if (ordinal < 0 || ordinal >= count)
        {
            throw new CudaUnavailableException(count == 0 ? "the NVIDIA driver reports no CUDA device." : $"device {ordinal} does not exist ({count} present).");
        }

        int device;
        CudaDriver.Check(CudaDriver.cuDeviceGet(&device, ordinal), "cuDeviceGet");
        IntPtr context;
        CudaDriver.Check(CudaDriver.cuDevicePrimaryCtxRetain(&context, device), "cuDevicePrimaryCtxRetain");
        CudaDriver.Check(CudaDriver.cuCtxSetCurrent(context), "cuCtxSetCurrent");
        try
        {
            return new CudaContext(device, context);
        }
        catch
        {
            _ = CudaDriver.cuDevicePrimaryCtxRelease(device);
            throw;
        }
    }

    /// <summary>Makes this context current on the calling thread.</summary>
    public void MakeCurrent()
    {
        ObjectDisposedException.ThrowIf(IsClosed, this);
        CudaDriver.Check(CudaDriver.cuCtxSetCurrent(Handle), "cuCtxSetCurrent");
    }

    /// <summary>Waits for all work in the context.</summary>
    public void Synchronize()
    {
        MakeCurrent();
        CudaDriver.Check(CudaDriver.cuCtxSynchronize(), "cuCtxSynchronize");
    }

    /// <summary>Releases the primary context (objects created from it must be disposed first).</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _closed, 1) == 0)
        {
            _ = CudaDriver.cuCtxSynchronize();
            _ = CudaDriver.cuDevicePrimaryCtxRelease(Device);
        }
    }

    /// <inheritdoc />
    public override string ToString() =>
        $"{Name} (compute {ComputeCapability}, {Multiprocessors} SMs, {TotalMemory / (1 << 20)} MiB, driver CUDA {DriverVersion})";

    private int Attribute(CudaDeviceAttribute attribute)
    {
        int value;
        CudaDriver.Check(CudaDriver.cuDeviceGetAttribute(&value, attribute, Device), $"cuDeviceGetAttribute({attribute})");
        return value;
    }

    private static void Initialise()
    {
        lock (InitLock)
        {
            if (s_initialised)
            {
                return;
            }

            CudaResult result;
            try
            {
                result = CudaDriver.cuInit(0);
            }
            catch (DllNotFoundException e)
            {
                throw new CudaUnavailableException(e.Message, e);
            }
            catch (EntryPointNotFoundException e)
            {
                throw new CudaUnavailableException("the NVIDIA driver is too old for this backend (" + e.Message + ").", e);
            }

            if (result == CudaResult.NoDevice)
            {
                throw new CudaUnavailableException("the NVIDIA driver reports no CUDA device (cuInit: CUDA_ERROR_NO_DEVICE).");
            }

            if (result != CudaResult.Success)
            {
                throw new CudaUnavailableException($"cuInit failed: {CudaDriver.ErrorName(result) ?? ((int)result).ToString(System.Globalization.CultureInfo.InvariantCulture)}.", CudaException.From(result, "cuInit"));
            }

            s_initialised = true;
        }
    }
}

/// <summary>Device memory: <see cref="Bytes"/> bytes at <see cref="Pointer"/>.</summary>
public sealed unsafe class DeviceBuffer : CudaHandle
{
    private DeviceBuffer(CudaContext context, ulong pointer, long bytes)
        : base(context, (IntPtr)pointer)
    {
        Bytes = bytes;
    }

    /// <summary>The device address.</summary>
    public ulong Pointer => (ulong)handle;

    /// <summary>Size in bytes.</summary>
    public long Bytes { get; }

    /// <summary>Allocates <paramref name="bytes"/> of device memory (at least 1; 256-byte aligned).</summary>
    public static DeviceBuffer Allocate(CudaContext context, long bytes)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        context.MakeCurrent();
        ulong p;
        CudaDriver.Check(CudaDriver.cuMemAlloc(&p, (nuint)Math.Max(bytes, 1)), $"cuMemAlloc({bytes} bytes)");
        return new DeviceBuffer(context, p, bytes);
    }

    /// <summary>Allocates a buffer and copies <paramref name="data"/> into it.</summary>
    public static DeviceBuffer Upload<T>(CudaContext context, ReadOnlySpan<T> data)
        where T : unmanaged
    {
        DeviceBuffer buffer = Allocate(context, (long)data.Length * sizeof(T));
        try
        {
            buffer.CopyFrom(data);
        }
        catch
        {
            buffer.Dispose();
            throw;
        }

        return buffer;
    }

    /// <summary>Copies <paramref name="data"/> to the start of the buffer (synchronous).</summary>
    public void CopyFrom<T>(ReadOnlySpan<T> data, long byteOffset = 0)
        where T : unmanaged
    {
        long bytes = (long)data.Length * sizeof(T);
        CheckRange(byteOffset, bytes);
        Context.MakeCurrent();
        fixed (T* p = data)
        {
            CudaDriver.Check(CudaDriver.cuMemcpyHtoD(Pointer + (ulong)byteOffset, p, (nuint)bytes), $"cuMemcpyHtoD({bytes} bytes)");
        }
    }

    /// <summary>Copies from the buffer into <paramref name="destination"/> (synchronous).</summary>
    public void CopyTo<T>(Span<T> destination, long byteOffset = 0)
        where T : unmanaged
    {
        long bytes = (long)destination.Length * sizeof(T);
        CheckRange(byteOffset, bytes);
        Context.MakeCurrent();
        fixed (T* p = destination)
        {
            CudaDriver.Check(CudaDriver.cuMemcpyDtoH(p, Pointer + (ulong)byteOffset, (nuint)bytes), $"cuMemcpyDtoH({bytes} bytes)");
        }
    }

    /// <summary>The whole buffer as an array of <typeparamref name="T"/>.</summary>
    public T[] ToArray<T>()
        where T : unmanaged
    {
        var result = new T[Bytes / sizeof(T)];
        CopyTo<T>(result);
        return result;
    }

    private protected override CudaResult Release(IntPtr value) => CudaDriver.cuMemFree((ulong)value);

    private void CheckRange(long offset, long bytes)
    {
        if (offset < 0 || bytes < 0 || offset + bytes > Bytes)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), $"[{offset}, {offset + bytes}) is outside the {Bytes}-byte buffer.");
        }
    }
}

/// <summary>One kernel argument, passed by value: an integer, a float, a double or a device pointer.</summary>
[StructLayout(LayoutKind.Sequential)]
public readonly struct KernelArg
{
    private readonly ulong _bits;

    private KernelArg(ulong bits) => _bits = bits;

    /// <summary>The raw little-endian bits (the driver reads as many bytes as the parameter has).</summary>
    public ulong Bits => _bits;

    /// <summary>An <c>int</c> argument.</summary>
    public static implicit operator KernelArg(int value) => new((uint)value);

    /// <summary>A <c>float</c> argument.</summary>
    public static implicit operator KernelArg(float value) => new(BitConverter.SingleToUInt32Bits(value));

    /// <summary>A <c>double</c> argument.</summary>
    public static implicit operator KernelArg(double value) => new(BitConverter.DoubleToUInt64Bits(value));

    /// <summary>A device pointer.</summary>
    public static implicit operator KernelArg(ulong pointer) => new(pointer);

    /// <summary>A buffer's device pointer (0 for null).</summary>
    public static implicit operator KernelArg(DeviceBuffer? buffer) => new(buffer?.Pointer ?? 0);

    /// <summary>An <c>int</c> argument.</summary>
    public static KernelArg FromInt32(int value) => value;

    /// <summary>A pointer argument.</summary>
    public static KernelArg FromPointer(ulong pointer) => pointer;
}

/// <summary>A CUDA stream: ordered asynchronous launches and copies.</summary>
public sealed unsafe class CudaStream : CudaHandle
{
    private CudaStream(CudaContext context, IntPtr stream)
        : base(context, stream)
    {
    }

    /// <summary>Creates a non-blocking stream.</summary>
    public static CudaStream Create(CudaContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        context.MakeCurrent();
        IntPtr s;
        CudaDriver.Check(CudaDriver.cuStreamCreate(&s, 1 /* CU_STREAM_NON_BLOCKING */), "cuStreamCreate");
        return new CudaStream(context, s);
    }

    /// <summary>Launches <paramref name="function"/> with a grid of <paramref name="grid"/> blocks of <paramref name="block"/> threads.</summary>
    public void Launch(CudaFunction function, (int X, int Y, int Z) grid, (int X, int Y, int Z) block, int sharedBytes, params ReadOnlySpan<KernelArg> args)
    {
        if (grid.X <= 0 || grid.Y <= 0 || grid.Z <= 0 || grid.X > int.MaxValue || grid.Y > 65535 || grid.Z > 65535)
        {
            throw new ArgumentOutOfRangeException(nameof(grid), $"{function.Name}: grid {grid} is empty or too large.");
        }

        int n = args.Length;
        ulong* values = stackalloc ulong[Math.Max(n, 1)];
        void** pointers = stackalloc void*[Math.Max(n, 1)];
        for (int i = 0; i < n; i++)
        {
            values[i] = args[i].Bits;
            pointers[i] = values + i;
        }

        if (!ProgrammaticLaunch)
        {
            CudaDriver.Check(
                CudaDriver.cuLaunchKernel(function.Handle, (uint)grid.X, (uint)grid.Y, (uint)grid.Z, (uint)block.X, (uint)block.Y, (uint)block.Z,
                    (uint)sharedBytes, handle, pointers, null),
                $"cuLaunchKernel({function.Name})");
            return;
        }

        LaunchAttribute attribute = default;
        attribute.Id = LaunchAttribute.ProgrammaticStreamSerialization;
        attribute.Value = 1;
        var config = new LaunchConfig
        {
            GridX = (uint)grid.X,
            GridY = (uint)grid.Y,
            GridZ = (uint)grid.Z,
            BlockX = (uint)block.X,
            BlockY = (uint)block.Y,
            BlockZ = (uint)block.Z,
            SharedBytes = (uint)sharedBytes,
            Stream = handle,
            Attributes = &attribute,
            AttributeCount = 1,
        };
        CudaDriver.Check(CudaDriver.cuLaunchKernelEx(&config, function.Handle, pointers, null), $"cuLaunchKernelEx({function.Name})");
    }

    /// <summary>
    /// Launch kernels with programmatic stream serialization (Hopper+, PDL): a kernel may start while the previous one
    /// finishes and waits for it with <c>griddepcontrol.wait</c> (every LocalMxfp4 kernel does before reading earlier
    /// results), which hides each launch's ramp-up behind its predecessor's tail.
    /// </summary>
    public bool ProgrammaticLaunch { get; set; }

    /// <summary>Host → device copy, asynchronous (pinned source) or staged by the driver (pageable source).</summary>
    public void CopyToDevice(ulong destination, void* source, long bytes) =>
        CudaDriver.Check(CudaDriver.cuMemcpyHtoDAsync(destination, source, (nuint)bytes, handle), $"cuMemcpyHtoDAsync({bytes} bytes)");

    /// <summary>Device → host copy, asynchronous (call <see cref="Synchronize"/> before reading a pageable destination).</summary>
    public void CopyToHost(void* destination, ulong source, long bytes) =>
        CudaDriver.Check(CudaDriver.cuMemcpyDtoHAsync(destination, source, (nuint)bytes, handle), $"cuMemcpyDtoHAsync({bytes} bytes)");

    /// <summary>Device → device copy.</summary>
    public void CopyDevice(ulong destination, ulong source, long bytes) =>
        CudaDriver.Check(CudaDriver.cuMemcpyDtoDAsync(destination, source, (nuint)bytes, handle), $"cuMemcpyDtoDAsync({bytes} bytes)");

    /// <summary>Fills <paramref name="count"/> 32-bit words with <paramref name="value"/>.</summary>
    public void Fill32(ulong destination, uint value, long count) =>
        CudaDriver.Check(CudaDriver.cuMemsetD32Async(destination, value, (nuint)count, handle), "cuMemsetD32Async");

    /// <summary>Fills <paramref name="count"/> bytes with <paramref name="value"/>.</summary>
    public void Fill8(ulong destination, byte value, long count) =>
        CudaDriver.Check(CudaDriver.cuMemsetD8Async(destination, value, (nuint)count, handle), "cuMemsetD8Async");

    /// <summary>Waits for everything queued on the stream; errors of earlier asynchronous work surface here.</summary>
    public void Synchronize() => CudaDriver.Check(CudaDriver.cuStreamSynchronize(handle), "cuStreamSynchronize");

    private protected override CudaResult Release(IntPtr value) => CudaDriver.cuStreamDestroy(value);
}
