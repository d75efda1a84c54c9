namespace LocalMxfp4.ChatClient;

/// <summary>
/// Our own per-request settings type for <c>ChatOptions.RawRepresentationFactory</c>: when the factory returns an
/// instance, it is the base of the request and the strongly typed <c>ChatOptions</c> fields that are set override it.
/// It also reaches settings <c>ChatOptions</c> has no field for (repetition penalty, penalty window).
/// </summary>
public sealed class DuQuantGenerationSettings
{
    /// <summary>Temperature (0 = greedy).</summary>
    public float? Temperature { get; set; }

    /// <summary>Nucleus mass in (0, 1].</summary>
    public float? TopP { get; set; }

    /// <summary>Top-k (0 disables).</summary>
    public int? TopK { get; set; }

    /// <summary>Sampling seed.</summary>
    public long? Seed { get; set; }

    /// <summary>Reply length limit (clamped to the context left).</summary>
    public int? MaxOutputTokens { get; set; }

    /// <summary>OpenAI-style frequency penalty.</summary>
    public float? FrequencyPenalty { get; set; }

    /// <summary>OpenAI-style presence penalty.</summary>
    public float? PresencePenalty { get; set; }

    /// <summary>CTRL-style repetition penalty (1 disables).</summary>
    public float? RepetitionPenalty { get; set; }

    /// <summary>Recent tokens the penalties look at (0 = all).</summary>
    public int? PenaltyWindow { get; set; }

    /// <summary>Stop sequences, added to those of the <c>ChatOptions</c>.</summary>
    public IList<string> StopSequences { get; } = [];
}
