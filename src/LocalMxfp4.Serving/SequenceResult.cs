namespace LocalMxfp4.Serving;

/// <summary>Why a sequence ended.</summary>
public enum SequenceFinish
{
    /// <summary>A stop token was sampled.</summary>
    StopToken,

    /// <summary>The observer ended it (a stop string matched).</summary>
    Observer,

    /// <summary><see cref="SequenceRequest.MaxOutputTokens"/> tokens were generated.</summary>
    Length,

    /// <summary>The sequence reached the context length.</summary>
    ContextFull,
}

/// <summary>How a sequence went.</summary>
/// <param name="PromptTokens">Prompt length.</param>
/// <param name="CachedPromptTokens">Prompt tokens whose keys and values came from the prefix cache (not computed).</param>
/// <param name="OutputTokenIds">Every sampled token, the stop token included.</param>
/// <param name="Finish">Why it ended.</param>
/// <param name="QueueTime">From submission to admission.</param>
/// <param name="PrefillTime">From admission to the first sampled token.</param>
/// <param name="TimeToFirstToken">From submission to the first sampled token.</param>
/// <param name="DecodeTime">From the first sampled token to the last.</param>
/// <param name="Preemptions">Times the sequence was preempted for memory and recomputed.</param>
public sealed record SequenceResult(
    int PromptTokens,
    int CachedPromptTokens,
    IReadOnlyList<int> OutputTokenIds,
    SequenceFinish Finish,
    TimeSpan QueueTime,
    TimeSpan PrefillTime,
    TimeSpan TimeToFirstToken,
    TimeSpan DecodeTime,
    int Preemptions);
