namespace LocalMxfp4.Engine.Layers;

/// <summary>
/// Splits a range of output rows over a fixed number of threads. Work too small to pay for a thread hand-off
/// (stories260K's 64×64 matrices) runs inline, which on a 2-core machine matters more than peak parallelism.
/// </summary>
public sealed class ParallelRows
{
    /// <summary>Below this many multiply-adds a call runs on the calling thread.</summary>
    public const long InlineWorkThreshold = 1 << 18;

    private readonly ParallelOptions _options;

    /// <summary>Uses <paramref name="threads"/> workers (0 or less: one per processor).</summary>
    public ParallelRows(int threads = 0)
    {
        Threads = threads > 0 ? threads : Environment.ProcessorCount;
        _options = new ParallelOptions { MaxDegreeOfParallelism = Threads };
    }

    /// <summary>Worker count.</summary>
    public int Threads { get; }

    /// <summary>Calls <paramref name="body"/> on disjoint <c>[start, end)</c> chunks covering <c>[0, count)</c>.</summary>
    /// <param name="count">Rows to cover.</param>
    /// <param name="workPerRow">Multiply-adds per row, to decide whether threads are worth it.</param>
    /// <param name="body">The work for one chunk.</param>
    public void For(int count, long workPerRow, Action<int, int> body)
    {
        if (Threads == 1 || count < 2 || count * workPerRow < InlineWorkThreshold)
        {
            body(0, count);
            return;
        }

        // A few chunks per thread evens out uneven progress without the overhead of per-row scheduling.
        int chunks = Math.Min(count, Threads * 4);
        Parallel.For(0, chunks, _options, c =>
        {
            int start = (int)((long)count * c / chunks);
            int end = (int)((long)count * (c + 1) / chunks);
            body(start, end);
        });
    }
}
