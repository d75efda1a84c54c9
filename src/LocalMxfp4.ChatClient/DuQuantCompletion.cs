using Microsoft.Extensions.AI;

namespace LocalMxfp4.ChatClient;

/// <summary>
/// The raw record of one generation, set as <c>RawRepresentation</c> of the last streaming update and of the
/// <see cref="ChatResponse"/>: the exact prompt and output token ids and the timings behind the usage numbers.
/// </summary>
/// <param name="PromptTokenIds">The rendered prompt, special tokens included.</param>
/// <param name="OutputTokenIds">Every sampled token, the one that ended the reply included.</param>
/// <param name="FinishReason">Why generation ended.</param>
/// <param name="StopSequence">The stop sequence that ended it, if one did.</param>
/// <param name="DroppedMessages">Messages dropped by <see cref="ContextOverflowPolicy.DropOldestMessages"/>.</param>
/// <param name="QueueTime">Time spent waiting for a slot.</param>
/// <param name="PrefillTime">Time to run the prompt.</param>
/// <param name="TimeToFirstToken">From the request to the first sampled token (queue and prefill included).</param>
/// <param name="DecodeTime">Time from the first sampled token to the last.</param>
public sealed record DuQuantCompletion(
    IReadOnlyList<int> PromptTokenIds,
    IReadOnlyList<int> OutputTokenIds,
    ChatFinishReason FinishReason,
    string? StopSequence,
    int DroppedMessages,
    TimeSpan QueueTime,
    TimeSpan PrefillTime,
    TimeSpan TimeToFirstToken,
    TimeSpan DecodeTime)
{
    /// <summary>Prompt tokens whose keys and values came from the prefix cache (an earlier turn, another request) instead of being computed.</summary>
    public int CachedPromptTokens { get; init; }

    /// <summary>Times the request was preempted for KV memory and recomputed (transparent to its tokens).</summary>
    public int Preemptions { get; init; }

    /// <summary>Decode speed in tokens per second (0 when fewer than two tokens were sampled).</summary>
    public double DecodeTokensPerSecond => OutputTokenIds.Count > 1 && DecodeTime > TimeSpan.Zero
        ? (OutputTokenIds.Count - 1) / DecodeTime.TotalSeconds
        : 0;
}
