using System.Diagnostics.Metrics;

namespace LocalMxfp4.ChatClient.Telemetry;

/// <summary>The instruments of one client, on a meter from the DI <see cref="IMeterFactory"/> when there is one.</summary>
internal sealed class DuQuantMetrics : IDisposable
{
    private static readonly double[] SecondsBuckets = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 30, 60];
    private static readonly long[] TokenBuckets = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864];

    private readonly Meter _meter;
    private readonly bool _ownsMeter;

    public DuQuantMetrics(IMeterFactory? factory)
    {
        _ownsMeter = factory is null;
        _meter = factory?.Create(DuQuantTelemetry.MeterName) ?? new Meter(DuQuantTelemetry.MeterName);
        TimeToFirstToken = Seconds(DuQuantTelemetry.TimeToFirstToken, "Time to generate the first token of a request.");
        TimePerOutputToken = Seconds(DuQuantTelemetry.TimePerOutputToken, "Time per output token after the first.");
        RequestDuration = Seconds(DuQuantTelemetry.RequestDuration, "Duration of a generation request.");
        QueueTime = Seconds(DuQuantTelemetry.QueueTime, "Time a request waited for a generation slot.");
        TokenUsage = _meter.CreateHistogram(DuQuantTelemetry.TokenUsage, "{token}", "Input and output tokens per request.",
            tags: null, advice: new InstrumentAdvice<long> { HistogramBucketBoundaries = TokenBuckets });
        QueueLength = _meter.CreateUpDownCounter<long>(DuQuantTelemetry.QueueLength, "{request}", "Requests waiting for a generation slot.");
        CachedInputTokens = _meter.CreateHistogram(DuQuantTelemetry.CachedInputTokens, "{token}", "Prompt tokens per request reused from the prefix cache.",
            tags: null, advice: new InstrumentAdvice<long> { HistogramBucketBoundaries = TokenBuckets });
        PrefillThroughput = _meter.CreateHistogram<double>(DuQuantTelemetry.PrefillThroughput, "{token}/s", "Prompt tokens processed per second.");
        KvCacheUtilization = _meter.CreateHistogram<double>(DuQuantTelemetry.KvCacheUtilization, "1", "Share of the KV cache used by a request.");
    }

    public Histogram<double> TimeToFirstToken { get; }

    public Histogram<double> TimePerOutputToken { get; }

    public Histogram<double> RequestDuration { get; }

    public Histogram<double> QueueTime { get; }

    public Histogram<long> TokenUsage { get; }

    public UpDownCounter<long> QueueLength { get; }

    public Histogram<long> CachedInputTokens { get; }

    public Histogram<double> PrefillThroughput { get; }

    public Histogram<double> KvCacheUtilization { get; }

    public void Dispose()
    {
        if (_ownsMeter)
        {
            _meter.Dispose();
        }
    }

    private Histogram<double> Seconds(string name, string description) =>
        _meter.CreateHistogram(name, "s", description, tags: null, advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = SecondsBuckets });
}
