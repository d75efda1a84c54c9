using System.Runtime.InteropServices;
using LocalMxfp4.Cuda.Interop;

namespace LocalMxfp4.Cuda;

/// <summary>
/// Base of the backend's driver handles: releases the object with its context made current on the releasing thread
/// (finalizers run on another thread), and never throws from release.
/// </summary>
public abstract class CudaHandle : SafeHandle
{
    /// <summary>Wraps <paramref name="handle"/>, owned by <paramref name="context"/>.</summary>
    private protected CudaHandle(CudaContext context, IntPtr handle)
        : base(IntPtr.Zero, ownsHandle: true)
    {
        Context = context;
        SetHandle(handle);
    }

    /// <summary>The context the object belongs to.</summary>
    public CudaContext Context { get; }

    /// <inheritdoc />
    public override bool IsInvalid => handle == IntPtr.Zero;

    /// <inheritdoc />
    protected sealed override bool ReleaseHandle()
    {
        if (Context.IsClosed)
        {
            return true; // the context (and everything in it) is already gone
        }

        return CudaDriver.cuCtxSetCurrent(Context.Handle) == CudaResult.Success && Release(handle) == CudaResult.Success;
    }

    /// <summary>Releases the driver object.</summary>
    private protected abstract CudaResult Release(IntPtr value);
}

/// <summary>A module loaded from a fatbin or cubin image.</summary>
public sealed unsafe class CudaModule : CudaHandle
{
    private CudaModule(CudaContext context, IntPtr module)
        : base(context, module)
    {
    }

    /// <summary>Loads <paramref name="image"/> (fatbin, cubin or PTX text ending in NUL) into <paramref name="context"/>.</summary>
    public static CudaModule Load(CudaContext context, ReadOnlySpan<byte> image, string description)
    {
        ArgumentNullException.ThrowIfNull(context);
        context.MakeCurrent();
        IntPtr module;
        fixed (byte* p = image)
        {
            CudaDriver.Check(CudaDriver.cuModuleLoadData(&module, p), $"cuModuleLoadData({description})");
        }

        return new CudaModule(context, module);
    }

    /// <summary>The kernel named <paramref name="name"/> (an <c>extern "C"</c> name).</summary>
    public CudaFunction GetFunction(string name)
    {
        IntPtr function;
        CudaDriver.Check(CudaDriver.cuModuleGetFunction(&function, handle, name), $"cuModuleGetFunction({name})");
        return new CudaFunction(function, name);
    }

    /// <summary>The kernel named <paramref name="name"/>, or null when this module's code for the GPU lacks it (kernels compiled only for newer architectures or compilers).</summary>
    public CudaFunction? TryGetFunction(string name)
    {
        IntPtr function;
        CudaResult result = CudaDriver.cuModuleGetFunction(&function, handle, name);
        if (result == CudaResult.NotFound)
        {
            return null;
        }

        CudaDriver.Check(result, $"cuModuleGetFunction({name})");
        return new CudaFunction(function, name);
    }

    private protected override CudaResult Release(IntPtr value) => CudaDriver.cuModuleUnload(value);
}

/// <summary>A kernel of a loaded module (valid while the module is).</summary>
/// <param name="Handle">The <c>CUfunction</c>.</param>
/// <param name="Name">Its name, for error messages.</param>
public readonly record struct CudaFunction(IntPtr Handle, string Name)
{
    /// <summary>Registers used per thread.</summary>
    public unsafe int Registers
    {
        get
        {
            int value;
            CudaDriver.Check(CudaDriver.cuFuncGetAttribute(&value, CudaFunctionAttribute.NumRegisters, Handle), $"cuFuncGetAttribute({Name})");
            return value;
        }
    }

    /// <summary>Sets the preferred shared-memory carveout (percent of the unified L1/shared array; −1 = driver default).</summary>
    public void SetSharedMemoryCarveout(int percent) =>
        CudaDriver.Check(CudaDriver.cuFuncSetAttribute(Handle, CudaFunctionAttribute.PreferredSharedMemoryCarveout, percent), $"cuFuncSetAttribute({Name})");

    /// <summary>Allows up to <paramref name="bytes"/> of dynamic shared memory per block.</summary>
    public void SetMaxDynamicSharedMemory(int bytes) =>
        CudaDriver.Check(CudaDriver.cuFuncSetAttribute(Handle, CudaFunctionAttribute.MaxDynamicSharedSizeBytes, bytes), $"cuFuncSetAttribute({Name})");
}

/// <summary>A CUDA event, for timing and ordering.</summary>
public sealed unsafe class CudaEvent : CudaHandle
{
    private CudaEvent(CudaContext context, IntPtr value)
        : base(context, value)
    {
    }

    /// <summary>Creates an event with timing enabled.</summary>
    public static CudaEvent Create(CudaContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        context.MakeCurrent();
        IntPtr e;
        CudaDriver.Check(CudaDriver.cuEventCreate(&e, 0), "cuEventCreate");
        return new CudaEvent(context, e);
    }

    /// <summary>
    /// Records the event on <paramref name="stream"/>. <paramref name="external"/> (CU_EVENT_RECORD_EXTERNAL) makes a
    /// record under stream capture a real event-record node of the graph (timestamps readable after each replay)
    /// rather than an internal dependency.
    /// </summary>
    public void Record(CudaStream stream, bool external = false)
    {
        ArgumentNullException.ThrowIfNull(stream);
        CudaDriver.Check(
            external ? CudaDriver.cuEventRecordWithFlags(handle, stream.DangerousGetHandle(), 1) : CudaDriver.cuEventRecord(handle, stream.DangerousGetHandle()),
            "cuEventRecord");
    }

    /// <summary>Waits for the event.</summary>
    public void Synchronize() => CudaDriver.Check(CudaDriver.cuEventSynchronize(handle), "cuEventSynchronize");

    /// <summary>Milliseconds between <paramref name="start"/> and <paramref name="end"/> (both recorded and complete).</summary>
    public static float ElapsedMilliseconds(CudaEvent start, CudaEvent end)
    {
        ArgumentNullException.ThrowIfNull(start);
        ArgumentNullException.ThrowIfNull(end);
        float ms;
        CudaDriver.Check(CudaDriver.cuEventElapsedTime(&ms, start.DangerousGetHandle(), end.DangerousGetHandle()), "cuEventElapsedTime");
        return ms;
    }

    private protected override CudaResult Release(IntPtr value) => CudaDriver.cuEventDestroy(value);
}

/// <summary>An instantiated CUDA graph (captured from a stream), replayed with one launch.</summary>
public sealed unsafe class CudaGraphExec : CudaHandle
{
    private CudaGraphExec(CudaContext context, IntPtr exec, int nodes)
        : base(context, exec)
    {
        Nodes = nodes;
    }

    /// <summary>Kernel and copy nodes in the graph.</summary>
    public int Nodes { get; }

    /// <summary>Runs <paramref name="record"/> under stream capture on <paramref name="stream"/> and instantiates the result.</summary>
    public static CudaGraphExec Capture(CudaStream stream, Action record)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(record);
        CudaContext context = stream.Context;
        context.MakeCurrent();
        IntPtr s = stream.DangerousGetHandle();
        CudaDriver.Check(CudaDriver.cuStreamBeginCapture(s, CudaStreamCaptureMode.ThreadLocal), "cuStreamBeginCapture");
        IntPtr graph = IntPtr.Zero;
        try
        {
            record();
        }
        finally
        {
            CudaResult end = CudaDriver.cuStreamEndCapture(s, &graph);
            if (end != CudaResult.Success && graph == IntPtr.Zero)
            {
                CudaDriver.Check(end, "cuStreamEndCapture");
            }
        }

        try
        {
            nuint count = 0;
            CudaDriver.Check(CudaDriver.cuGraphGetNodes(graph, null, &count), "cuGraphGetNodes");
            IntPtr exec;
            CudaDriver.Check(CudaDriver.cuGraphInstantiateWithFlags(&exec, graph, 0), "cuGraphInstantiateWithFlags");
            return new CudaGraphExec(context, exec, (int)count);
        }
        finally
        {
            _ = CudaDriver.cuGraphDestroy(graph);
        }
    }

    /// <summary>Launches the graph on <paramref name="stream"/>.</summary>
    public void Launch(CudaStream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        CudaDriver.Check(CudaDriver.cuGraphLaunch(handle, stream.DangerousGetHandle()), "cuGraphLaunch");
    }

    private protected override CudaResult Release(IntPtr value) => CudaDriver.cuGraphExecDestroy(value);
}

/// <summary>Page-locked host memory (fast, asynchronous copies).</summary>
public sealed unsafe class PinnedBuffer : CudaHandle
{
    private PinnedBuffer(CudaContext context, IntPtr pointer, long bytes)
        : base(context, pointer)
    {
        Bytes = bytes;
    }

    /// <summary>Size in bytes.</summary>
    public long Bytes { get; }

    /// <summary>The host address.</summary>
    public void* Pointer => (void*)handle;

    /// <summary>Allocates <paramref name="bytes"/> of pinned host memory.</summary>
    public static PinnedBuffer Allocate(CudaContext context, long bytes)
    {
        ArgumentNullException.ThrowIfNull(context);
        context.MakeCurrent();
        void* p;
        CudaDriver.Check(CudaDriver.cuMemAllocHost(&p, (nuint)Math.Max(bytes, 1)), $"cuMemAllocHost({bytes} bytes)");
        return new PinnedBuffer(context, (IntPtr)p, bytes);
    }

    /// <summary>The memory as a span of <typeparamref name="T"/>.</summary>
    public Span<T> AsSpan<T>()
        where T : unmanaged => new((void*)handle, (int)(Bytes / sizeof(T)));

    private protected override CudaResult Release(IntPtr value) => CudaDriver.cuMemFreeHost((void*)value);
}
