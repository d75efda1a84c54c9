namespace LocalMxfp4.Engine.Contract;

/// <summary>
/// One sequence being processed: a KV cache and the position reached. Not thread-safe; a session belongs to
/// one caller at a time.
/// </summary>
public interface IInferenceSession : IDisposable
{
    /// <summary>Tokens already in the KV cache.</summary>
    int Position { get; }

    /// <summary>Capacity of the KV cache in tokens.</summary>
    int ContextLength { get; }

    /// <summary>
    /// Runs <paramref name="tokens"/> (a whole prompt for prefill, or one token for decode) after the cached ones
    /// and writes the next-token logits of the last one into <paramref name="logits"/> (vocabulary-sized).
    /// </summary>
    void Forward(ReadOnlySpan<int> tokens, Span<float> logits);

    /// <summary>
    /// Like <see cref="Forward"/>, but writes the logits of every position, <c>[tokens, vocabulary]</c> row-major
    /// (what perplexity evaluation needs).
    /// </summary>
    void ForwardAll(ReadOnlySpan<int> tokens, Span<float> logits);

    /// <summary>Forgets cached tokens beyond <paramref name="position"/> (0 clears the session).</summary>
    void Rewind(int position);
}
