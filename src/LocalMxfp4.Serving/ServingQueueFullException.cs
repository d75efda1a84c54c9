namespace LocalMxfp4.Serving;

/// <summary>More requests are waiting than <see cref="ServingOptions.MaxQueuedRequests"/> allows.</summary>
public sealed class ServingQueueFullException(int maxQueued)
    : InvalidOperationException($"{maxQueued} requests are already waiting (ServingOptions.MaxQueuedRequests); try again later.")
{
    /// <summary>The queue bound.</summary>
    public int MaxQueuedRequests { get; } = maxQueued;
}
