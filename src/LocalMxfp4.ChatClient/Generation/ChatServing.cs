using System.Diagnostics;
using LocalMxfp4.ChatClient.Loading;
using LocalMxfp4.ChatClient.Telemetry;
using LocalMxfp4.ChatClient.Templates;
using LocalMxfp4.Serving;
using Microsoft.Extensions.Logging;

namespace LocalMxfp4.ChatClient.Generation;

/// <summary>
/// The client's use of the serving layer: one <see cref="ServingEngine"/> (continuous batching, paged KV memory, prefix
/// cache) over the loaded model, sized from the client options; each request becomes a <see cref="SequenceRequest"/>
/// whose observer is a <see cref="ChatSequence"/>.
/// </summary>
internal sealed class ChatServing : IDisposable
{
    private readonly LoadedModel _model;
    private readonly DuQuantMetrics _metrics;
    private readonly ILogger _logger;
    private readonly string _modelId;
    private readonly CancellationTokenSource _shutdown = new();
    private readonly KeyValuePair<string, object?>[] _tags;
    private int _disposed;

    public ChatServing(LoadedModel model, DuQuantChatClientOptions options, string modelId, DuQuantMetrics metrics, ILogger logger)
    {
        _model = model;
        _metrics = metrics;
        _logger = logger;
        _modelId = modelId;
        _tags =
        [
            new("gen_ai.operation.name", "chat"),
            new("gen_ai.provider.name", DuQuantTelemetry.ProviderName),
            new("gen_ai.request.model", modelId),
            new("gen_ai.response.model", modelId),
        ];
        Replies = options.PrefixCaching ? new ReplyTokenCache() : null;
        Engine = new ServingEngine(model.Engine, new ServingOptions
        {
            ContextLength = model.ContextLength,
            MaxBatchSequences = options.MaxConcurrentRequests,
            MaxBatchTokens = options.MaxBatchTokens,
            MaxQueuedRequests = options.MaxQueuedRequests,
            KvCacheTokens = options.KvCacheTokens,
            KvCachePrecision = options.KvCachePrecision,
            PrefixCaching = options.PrefixCaching,
        });
    }

    public ServingEngine Engine { get; }

    /// <summary>Recent replies' token ids, so the next turn's prompt matches the cached prefix exactly (null without prefix caching).</summary>
    public ReplyTokenCache? Replies { get; }

    public CancellationToken ShutdownToken => _shutdown.Token;

    public int QueuedCount => Engine.QueuedCount;

    public int RunningCount => Engine.RunningCount;

    /// <summary>Queues <paramref name="request"/>; its events arrive on its channel.</summary>
    /// <exception cref="DuQuantQueueFullException">Too many requests are waiting.</exception>
    public void Submit(GenerationRequest request)
    {
        RequestPlan plan = request.Plan;
        // The activity's parent is the caller's current activity, but it must not become the caller's current one: the
        // caller keeps running its own spans while it reads the stream.
        Activity? previous = Activity.Current;
        Activity? activity = DuQuantTelemetry.Source.StartActivity($"chat {_modelId}", ActivityKind.Internal);
        Activity.Current = previous;
        if (activity is not null)
        {
            foreach (KeyValuePair<string, object?> tag in _tags)
            {
                activity.SetTag(tag.Key, tag.Value);
            }

            activity.SetTag("gen_ai.response.id", request.ResponseId);
            activity.SetTag("gen_ai.request.max_tokens", plan.MaxOutputTokens);
            activity.SetTag("gen_ai.request.temperature", plan.Sampling.Temperature);
        }

        var observer = new ChatSequence(request, _model, _metrics, _logger, _tags, activity, Replies);
        try
        {
            Engine.Submit(new SequenceRequest
            {
                PromptTokenIds = plan.PromptTokenIds,
                Sampling = plan.Sampling,
                MaxOutputTokens = plan.MaxOutputTokens,
                StopTokenIds = _model.StopTokenIds,
                LogitsProcessor = plan.TokenMask,
                Observer = observer,
                CancellationToken = request.Token,
            });
        }
        catch (Exception e)
        {
            Exception reported = e switch
            {
                ServingQueueFullException full => new DuQuantQueueFullException(full.MaxQueuedRequests),
                OperationCanceledException => request.CancellationError(),
                ObjectDisposedException => new ObjectDisposedException(nameof(DuQuantChatClient)),
                _ => e,
            };
            observer.OnFailed(reported);
            if (reported == e)
            {
                throw;
            }

            throw reported;
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        // Running requests see the shutdown token and end with ObjectDisposedException; queued ones fail at once.
        _shutdown.Cancel();
        Engine.Dispose();
        _shutdown.Dispose();
    }
}
