namespace LocalMxfp4.ChatClient;

/// <summary>Too many requests are already waiting for a generation slot; the request was not queued.</summary>
public sealed class DuQuantQueueFullException(int maxQueuedRequests)
    : InvalidOperationException($"{maxQueuedRequests} requests are already waiting (MaxQueuedRequests); retry later or raise MaxQueuedRequests.")
{
    /// <summary>The queue bound in force.</summary>
    public int MaxQueuedRequests { get; } = maxQueuedRequests;
}
