namespace LocalMxfp4.Serving;

/// <summary>
/// Restricts which tokens a sequence may sample next (the plug-in point for constrained decoding: JSON schemas,
/// forced tool calls). Applied to the logits of every step, before the sampler's penalties and temperature.
/// </summary>
public interface ILogitsProcessor
{
    /// <summary>Sets the logits of forbidden tokens to negative infinity.</summary>
    void Apply(Span<float> logits);

    /// <summary>Advances the processor's state past the sampled token.</summary>
    void Accept(int tokenId);

    /// <summary>Whether the last <see cref="Apply"/> allowed <paramref name="tokenId"/>.</summary>
    bool IsAllowed(int tokenId);
}
