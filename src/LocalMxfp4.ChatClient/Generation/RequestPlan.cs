using LocalMxfp4.Engine.Sampling;
using LocalMxfp4.Serving;

namespace LocalMxfp4.ChatClient.Generation;

/// <summary>One request, fully resolved before it is queued: prompt ids, sampling, limits, stops and decoding hooks.</summary>
internal sealed class RequestPlan
{
    public required IReadOnlyList<int> PromptTokenIds { get; init; }

    public required SamplingOptions Sampling { get; init; }

    public required int MaxOutputTokens { get; init; }

    public required IReadOnlyList<string> StopSequences { get; init; }

    public int DroppedMessages { get; init; }

    public int IgnoredTools { get; init; }

    /// <summary>Constrained decoding (a JSON response format or a required tool call); null for free text.</summary>
    public ILogitsProcessor? TokenMask { get; init; }

    public IResponseParser Parser { get; init; } = new TextResponseParser();
}
