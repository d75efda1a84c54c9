namespace LocalMxfp4.Engine.Sampling;

/// <summary>
/// How the next token is chosen from the logits. Applied in this order: repetition, frequency and presence
/// penalties over the last <see cref="PenaltyWindow"/> tokens of the context; then temperature 0 → greedy
/// (argmax, lowest id on ties); otherwise top-k, temperature softmax, top-p, and a draw from a generator seeded
/// with <see cref="Seed"/> (same seed, same model, same prompt → same tokens).
/// </summary>
public sealed record SamplingOptions
{
    /// <summary>Greedy decoding, no penalties.</summary>
    public static SamplingOptions Greedy { get; } = new() { Temperature = 0 };

    /// <summary>Softmax temperature; 0 means greedy.</summary>
    public float Temperature { get; init; } = 0.8f;

    /// <summary>Keep only the k most likely tokens; 0 disables.</summary>
    public int TopK { get; init; }

    /// <summary>Keep the smallest set of most likely tokens whose probability reaches p; 1 disables.</summary>
    public float TopP { get; init; } = 1f;

    /// <summary>CTRL-style penalty: positive logits of seen tokens divided by it, negative ones multiplied; 1 disables.</summary>
    public float RepetitionPenalty { get; init; } = 1f;

    /// <summary>OpenAI-style: subtract <c>count · penalty</c> from each seen token's logit.</summary>
    public float FrequencyPenalty { get; init; }

    /// <summary>OpenAI-style: subtract the penalty once from every seen token's logit.</summary>
    public float PresencePenalty { get; init; }

    /// <summary>How many of the most recent context tokens the penalties look at; 0 means the whole context.</summary>
    public int PenaltyWindow { get; init; } = 64;

    /// <summary>Seed of the sampling generator; null draws one at random.</summary>
    public int? Seed { get; init; }

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first invalid setting.</summary>
    public void Validate()
    {
        if (!(Temperature >= 0) || float.IsInfinity(Temperature))
        {
            throw new ArgumentOutOfRangeException(nameof(Temperature), Temperature, "Temperature must be a finite number ≥ 0.");
        }

        if (TopK < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(TopK), TopK, "TopK must be ≥ 0 (0 disables it).");
        }

        if (!(TopP > 0 && TopP <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(TopP), TopP, "TopP must be in (0, 1].");
        }

        if (!(RepetitionPenalty > 0) || float.IsInfinity(RepetitionPenalty))
        {
            throw new ArgumentOutOfRangeException(nameof(RepetitionPenalty), RepetitionPenalty, "RepetitionPenalty must be a finite number > 0.");
        }

        if (!float.IsFinite(FrequencyPenalty) || !float.IsFinite(PresencePenalty))
        {
            throw new ArgumentOutOfRangeException(nameof(FrequencyPenalty), "Frequency and presence penalties must be finite.");
        }

        if (PenaltyWindow < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(PenaltyWindow), PenaltyWindow, "PenaltyWindow must be ≥ 0.");
        }
    }
}
