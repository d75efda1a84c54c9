using System.Runtime.ExceptionServices;

namespace LocalMxfp4.Engine.Layers;

/// <summary>
/// Splits a range of rows over persistent worker threads, which claim chunks of it as they go. Decode calls a few hundred
/// small matrix products per token; waking pool threads for each (Parallel.For) costs more than the work on a
/// 2-core machine, so workers spin briefly between calls and block only when idle. Work too small to pay for a
/// hand-off runs inline, and a call made while another is in flight (another session, or a nested call) runs
/// inline rather than oversubscribing the cores.
/// </summary>
public sealed class ParallelRows : IDisposable
{
    /// <summary>Below this many multiply-adds a call runs on the calling thread.</summary>
    public const long InlineWorkThreshold = 1 << 16;

    private const int SpinIterations = 2_000;

    private readonly Thread[] _workers;
    private readonly object _gate = new();
    private Action<int, int>? _job;
    private int _count;
    private int _chunk;
    private int _next;
    private int _generation;
    private int _pending;
    private int _busy;
    private volatile bool _disposed;
    private ExceptionDispatchInfo? _failure;

    /// <summary>Uses <paramref name="threads"/> threads including the caller (0 or less: one per processor).</summary>
    public ParallelRows(int threads = 0)
    {
        Threads = threads > 0 ? threads : Environment.ProcessorCount;
        _workers = new Thread[Threads - 1];
        for (int w = 0; w < _workers.Length; w++)
        {
            int index = w + 1;
            _workers[w] = new Thread(() => WorkerLoop(index)) { IsBackground = true, Name = $"lmx-rows-{index}" };
            _workers[w].Start();
        }
    }

    /// <summary>Threads working on a call, the caller included.</summary>
    public int Threads { get; }

    /// <summary>Calls <paramref name="body"/> on disjoint <c>[start, end)</c> chunks covering <c>[0, count)</c>.</summary>
    /// <param name="count">Rows to cover.</param>
    /// <param name="workPerRow">Multiply-adds per row, to decide whether threads are worth it.</param>
    /// <param name="body">The work for one chunk; may run on any of the threads.</param>
    public void For(int count, long workPerRow, Action<int, int> body)
    {
        ArgumentNullException.ThrowIfNull(body);
        if (_workers.Length == 0 || count < 2 || count * workPerRow < InlineWorkThreshold || _disposed
            || Interlocked.CompareExchange(ref _busy, 1, 0) != 0)
        {
            body(0, count);
            return;
        }

        try
        {
            _job = body;
            _count = count;
            // Chunks are claimed dynamically: a thread whose core is slow (another process, a noisy VM neighbour)
            // takes fewer of them instead of holding the whole call up. Eight chunks per thread keep the claims cheap.
            _chunk = Math.Max(1, (count + (Threads * 8) - 1) / (Threads * 8));
            _next = 0;
            _failure = null;
            Volatile.Write(ref _pending, _workers.Length);
            lock (_gate)
            {
                _generation++;
                Monitor.PulseAll(_gate);
            }

            ExceptionDispatchInfo? own = null;
            try
            {
                RunChunk(0);
            }
            catch (Exception e)
            {
                own = ExceptionDispatchInfo.Capture(e);
            }

            // Always wait for every worker, even when this thread's chunk failed: the caller's pinned buffers must
            // outlive every write into them. Spin then yield, never sleep (a 1 ms sleep per call would dominate decode).
            var spin = default(SpinWait);
            while (Volatile.Read(ref _pending) != 0)
            {
                spin.SpinOnce(sleep1Threshold: -1);
            }

            _job = null;
            own?.Throw();
            _failure?.Throw();
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        // Take the pool for good: a call in flight finishes first, and later calls run inline.
        while (Interlocked.CompareExchange(ref _busy, 1, 0) != 0)
        {
            Thread.Yield();
        }

        _disposed = true;
        lock (_gate)
        {
            _generation++;
            Monitor.PulseAll(_gate);
        }
    }

    private void RunChunk(int index)
    {
        Action<int, int> job = _job!;
        int count = _count, chunk = _chunk;
        while (true)
        {
            int start = Interlocked.Add(ref _next, chunk) - chunk;
            if (start >= count)
            {
                return;
            }

            job(start, Math.Min(count, start + chunk));
        }
    }

    private void WorkerLoop(int index)
    {
        int seen = 0;
        while (true)
        {
            int spins = 0;
            while (Volatile.Read(ref _generation) == seen && spins++ < SpinIterations)
            {
                Thread.SpinWait(20);
            }

            if (Volatile.Read(ref _generation) == seen)
            {
                lock (_gate)
                {
                    while (_generation == seen)
                    {
                        Monitor.Wait(_gate);
                    }
                }
            }

            seen = Volatile.Read(ref _generation);
            if (_disposed)
            {
                return;
            }

            try
            {
                RunChunk(index);
            }
            catch (Exception e)
            {
                _failure ??= ExceptionDispatchInfo.Capture(e);
            }
            finally
            {
                Interlocked.Decrement(ref _pending);
            }
        }
    }
}
