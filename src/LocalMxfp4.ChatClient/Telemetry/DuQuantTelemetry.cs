using System.Diagnostics;

namespace LocalMxfp4.ChatClient.Telemetry;

/// <summary>
/// Names of the client's own telemetry. Subscribe with <c>AddSource(DuQuantTelemetry.ActivitySourceName)</c> and
/// <c>AddMeter(DuQuantTelemetry.MeterName)</c>. The metrics follow the OpenTelemetry GenAI server conventions; the
/// <c>duquant.*</c> ones describe the engine. Client-side spans come from MEAI's <c>UseOpenTelemetry()</c>.
/// </summary>
public static class DuQuantTelemetry
{
    /// <summary>The <see cref="System.Diagnostics.ActivitySource"/> name: one activity per generation.</summary>
    public const string ActivitySourceName = "DuQuant";

    /// <summary>The <see cref="System.Diagnostics.Metrics.Meter"/> name.</summary>
    public const string MeterName = "DuQuant";

    /// <summary>Histogram, seconds: from the request to the first generated token (queue and prefill included).</summary>
    public const string TimeToFirstToken = "gen_ai.server.time_to_first_token";

    /// <summary>Histogram, seconds: decode time per output token after the first.</summary>
    public const string TimePerOutputToken = "gen_ai.server.time_per_output_token";

    /// <summary>Histogram, seconds: the whole request (queue, prefill, decode).</summary>
    public const string RequestDuration = "gen_ai.server.request.duration";

    /// <summary>Histogram, tokens per request, with <c>gen_ai.token.type</c> = input | output.</summary>
    public const string TokenUsage = "gen_ai.client.token.usage";

    /// <summary>UpDownCounter: requests waiting for a slot.</summary>
    public const string QueueLength = "duquant.queue.length";

    /// <summary>Histogram, seconds: time a request waited for a slot.</summary>
    public const string QueueTime = "duquant.queue.time";

    /// <summary>Histogram, tokens per second: prompt processing speed.</summary>
    public const string PrefillThroughput = "duquant.prefill.throughput";

    /// <summary>Histogram, tokens per request: prompt tokens reused from the prefix cache (not computed).</summary>
    public const string CachedInputTokens = "duquant.prefix_cache.tokens";

    /// <summary>Histogram, 0–1: share of the context a request used when it ended.</summary>
    public const string KvCacheUtilization = "duquant.kv_cache.utilization";

    /// <summary>The provider name used in metadata and the <c>gen_ai.provider.name</c> attribute.</summary>
    public const string ProviderName = "duquant";

    internal static readonly ActivitySource Source = new(ActivitySourceName, typeof(DuQuantTelemetry).Assembly.GetName().Version?.ToString());
}
