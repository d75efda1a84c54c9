using LocalMxfp4.Engine.Sampling;

namespace LocalMxfp4.Serving;

/// <summary>One-call generation over a <see cref="ServingEngine"/>, for command-line tools and tests.</summary>
public static class ServingEngineExtensions
{
    /// <summary>
    /// Runs one sequence to its end and returns how it went; <paramref name="onToken"/> sees every sampled token as it
    /// comes (on the loop's thread) and may return false to stop. Blocks the calling thread.
    /// </summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public static SequenceResult Generate(
        this ServingEngine engine, IReadOnlyList<int> prompt, SamplingOptions sampling, int maxOutputTokens, IReadOnlySet<int> stopTokenIds,
        Func<int, bool>? onToken = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(engine);
        var observer = new CallbackObserver(onToken);
        engine.Submit(new SequenceRequest
        {
            PromptTokenIds = prompt,
            Sampling = sampling,
            MaxOutputTokens = maxOutputTokens,
            StopTokenIds = stopTokenIds,
            Observer = observer,
            CancellationToken = cancellationToken,
        });
        return observer.Result.GetAwaiter().GetResult();
    }

    private sealed class CallbackObserver(Func<int, bool>? onToken) : ISequenceObserver
    {
        private readonly TaskCompletionSource<SequenceResult> _done = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task<SequenceResult> Result => _done.Task;

        public void OnAdmitted(int cachedTokens)
        {
        }

        public bool OnToken(int tokenId) => onToken?.Invoke(tokenId) ?? true;

        public void OnCompleted(SequenceResult result) => _done.TrySetResult(result);

        public void OnFailed(Exception error) => _done.TrySetException(error);
    }
}
