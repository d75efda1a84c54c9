using System.Threading.Channels;

namespace LocalMxfp4.ChatClient.Generation;

/// <summary>A submitted request: its plan, its cancellation, and the channel its reply streams through.</summary>
internal sealed class GenerationRequest : IDisposable
{
    private readonly Channel<GenerationEvent> _events = Channel.CreateUnbounded<GenerationEvent>(
        new UnboundedChannelOptions { SingleReader = true, SingleWriter = false });

    private readonly CancellationTokenSource _cancellation;

    public GenerationRequest(RequestPlan plan, string responseId, CancellationToken callerToken, CancellationToken shutdownToken)
    {
        Plan = plan;
        ResponseId = responseId;
        CallerToken = callerToken;
        ShutdownToken = shutdownToken;
        _cancellation = CancellationTokenSource.CreateLinkedTokenSource(callerToken, shutdownToken);
        // Read once: the caller disposes the source when it abandons a stream, and CancellationTokenSource.Token
        // throws after that, while the token itself stays usable.
        Token = _cancellation.Token;
    }

    public RequestPlan Plan { get; }

    public string ResponseId { get; }

    /// <summary>The caller's token (cancellation reported to the caller names it).</summary>
    public CancellationToken CallerToken { get; }

    /// <summary>Cancelled when the client is disposed.</summary>
    public CancellationToken ShutdownToken { get; }

    /// <summary>Cancelled by the caller, by an abandoned stream, or by disposal.</summary>
    public CancellationToken Token { get; }

    public ChannelReader<GenerationEvent> Events => _events.Reader;

    public void Write(GenerationEvent e) => _events.Writer.TryWrite(e);

    public void Complete() => _events.Writer.TryComplete();

    public void Fail(Exception error) => _events.Writer.TryComplete(error);

    /// <summary>The exception that ends a request cancelled by <see cref="Token"/>.</summary>
    public Exception CancellationError() => ShutdownToken.IsCancellationRequested && !CallerToken.IsCancellationRequested
        ? new ObjectDisposedException(nameof(DuQuantChatClient), "The DuQuantChatClient was disposed while this request was queued or running.")
        : new OperationCanceledException(CallerToken.IsCancellationRequested ? CallerToken : Token);

    /// <summary>Stops the request because its reader went away.</summary>
    public void Abandon()
    {
        try
        {
            _cancellation.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // Already finished and disposed.
        }
    }

    public void Dispose() => _cancellation.Dispose();
}
