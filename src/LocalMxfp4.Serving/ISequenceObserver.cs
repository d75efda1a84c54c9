namespace LocalMxfp4.Serving;

/// <summary>
/// Receives one sequence's progress. Called on the engine loop's thread, between steps: keep the work short (turning
/// a token into text, matching stop strings, writing to a channel), never block. An exception thrown here fails this
/// sequence only.
/// </summary>
public interface ISequenceObserver
{
    /// <summary>The sequence was admitted; <paramref name="cachedTokens"/> prompt tokens came from the prefix cache.</summary>
    void OnAdmitted(int cachedTokens);

    /// <summary>A token was sampled (stop tokens included). Return false to end the sequence here (a stop string matched).</summary>
    bool OnToken(int tokenId);

    /// <summary>The sequence ended normally.</summary>
    void OnCompleted(SequenceResult result);

    /// <summary>The sequence ended with an error: <see cref="OperationCanceledException"/> when its token was cancelled, <see cref="ObjectDisposedException"/> when the engine was disposed.</summary>
    void OnFailed(Exception error);
}
