using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;
using LocalMxfp4.ChatClient.Generation;
using LocalMxfp4.ChatClient.Loading;
using LocalMxfp4.ChatClient.Telemetry;
using LocalMxfp4.ChatClient.Templates;
using LocalMxfp4.Engine.Contract;
using LocalMxfp4.Serving;
using LocalMxfp4.Tokenization;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace LocalMxfp4.ChatClient;

/// <summary>
/// A Microsoft.Extensions.AI <see cref="IChatClient"/> that runs a LLaMA model in this process through the
/// LocalMxfp4 engine (float reference, W4A4 CPU, or CUDA as they are available).
/// </summary>
/// <remarks>
/// <para>Thread-safe: concurrent requests wait in a bounded FIFO queue for one of
/// <see cref="DuQuantChatClientOptions.MaxConcurrentRequests"/> generation slots (each with its own KV cache) and run on
/// dedicated worker threads. Cancelling a queued request removes it from the queue; cancelling a running one stops it
/// before its next token and frees its slot.</para>
/// <para>The model loads on first use, or earlier through <see cref="WarmUpAsync"/> (the hosted warm-up service calls
/// it at host start). <see cref="Dispose"/> is idempotent; it fails queued requests, stops running ones, waits for the
/// workers and releases the engine the client loaded.</para>
/// </remarks>
public sealed class DuQuantChatClient : IChatClient
{
    private readonly DuQuantChatClientOptions _options;
    private readonly ILogger _logger;
    private readonly DuQuantMetrics _metrics;
    private readonly SemaphoreSlim _loadLock = new(1, 1);
    private volatile LoadedModel? _model;
    private volatile ChatServing? _serving;
    private int _disposed;

    /// <summary>Creates a client that loads the model at <see cref="DuQuantChatClientOptions.ModelPath"/> on first use.</summary>
    /// <param name="options">The settings; validated now (the model path must exist).</param>
    /// <param name="loggerFactory">Where logs go; none when null.</param>
    /// <param name="meterFactory">Creates the "DuQuant" meter; a private meter when null.</param>
    /// <exception cref="ArgumentException">The options are invalid; the message says which setting and why.</exception>
    public DuQuantChatClient(DuQuantChatClientOptions options, ILoggerFactory? loggerFactory = null, IMeterFactory? meterFactory = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        string[] problems = DuQuantChatClientOptionsValidator.Check(options);
        if (problems.Length > 0)
        {
            throw new ArgumentException("Invalid DuQuantChatClientOptions: " + string.Join(" ", problems), nameof(options));
        }

        _options = options.Clone();
        _logger = loggerFactory?.CreateLogger<DuQuantChatClient>() ?? NullLogger<DuQuantChatClient>.Instance;
        _metrics = new DuQuantMetrics(meterFactory);
        string full = Path.GetFullPath(_options.ModelPath!);
        ModelId = _options.ModelId ?? ModelIdFromPath(full);
        Metadata = new ChatClientMetadata(DuQuantTelemetry.ProviderName, new Uri(full), ModelId);
    }

    /// <summary>
    /// Creates a client over an engine and tokenizer that are already loaded (to share one engine between clients, or
    /// to run an engine built in code). The client disposes the engine only when <paramref name="ownsEngine"/> is true.
    /// </summary>
    /// <exception cref="ArgumentException">The options are invalid (the model path is not needed here).</exception>
    public DuQuantChatClient(
        IInferenceEngine engine, LlmTokenizer tokenizer, DuQuantChatClientOptions? options = null, bool ownsEngine = false,
        ILoggerFactory? loggerFactory = null, IMeterFactory? meterFactory = null)
    {
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentNullException.ThrowIfNull(tokenizer);
        _options = options?.Clone() ?? new DuQuantChatClientOptions();
        string[] problems = DuQuantChatClientOptionsValidator.Check(_options, requireModelPath: false);
        if (problems.Length > 0)
        {
            throw new ArgumentException("Invalid DuQuantChatClientOptions: " + string.Join(" ", problems), nameof(options));
        }

        _logger = loggerFactory?.CreateLogger<DuQuantChatClient>() ?? NullLogger<DuQuantChatClient>.Instance;
        _metrics = new DuQuantMetrics(meterFactory);
        LoadedModel model = LoadedModel.FromEngine(engine, tokenizer, _options, ownsEngine);
        ModelId = _options.ModelId ?? ModelIdFromPath(model.ModelPath);
        Metadata = new ChatClientMetadata(DuQuantTelemetry.ProviderName, new Uri(Path.GetFullPath(model.ModelPath)), ModelId);
        Install(model);
    }

    /// <summary>The model id reported in responses (<see cref="DuQuantChatClientOptions.ModelId"/> or the model directory's name).</summary>
    public string ModelId { get; }

    /// <summary>Provider "duquant", the model's file URI, and <see cref="ModelId"/>.</summary>
    public ChatClientMetadata Metadata { get; }

    /// <summary>Whether the model is in memory.</summary>
    public bool IsLoaded => _model is not null;

    /// <summary>Requests waiting for a generation slot.</summary>
    public int QueuedRequests => _serving?.QueuedCount ?? 0;

    /// <summary>Requests generating now.</summary>
    public int RunningRequests => _serving?.RunningCount ?? 0;

    /// <summary>The prompt format in use, once the model is loaded.</summary>
    public IChatTemplate? Template => _model?.Template;

    /// <summary>
    /// Loads the model if needed and generates one token, so the first real request pays neither the load nor the
    /// first-run costs. Logs the load time and the time to first token.
    /// </summary>
    /// <returns>The load time (zero when it was already loaded) and the warm-up's time to first token.</returns>
    public async Task<DuQuantWarmUpResult> WarmUpAsync(CancellationToken cancellationToken = default)
    {
        bool wasLoaded = IsLoaded;
        LoadedModel model = await EnsureLoadedAsync(cancellationToken).ConfigureAwait(false);
        ChatResponse response = await GetResponseAsync(
            [new ChatMessage(ChatRole.User, "Hello")],
            new ChatOptions { MaxOutputTokens = 1, Temperature = 0 },
            cancellationToken).ConfigureAwait(false);
        var completion = (DuQuantCompletion)response.RawRepresentation!;
        var result = new DuQuantWarmUpResult(wasLoaded ? TimeSpan.Zero : model.LoadTime, completion.TimeToFirstToken);
        Log.WarmUpCompleted(_logger, ModelId, result.LoadTime.TotalSeconds, result.TimeToFirstToken.TotalMilliseconds);
        return result;
    }

    /// <inheritdoc />
    /// <remarks>Runs the same generation as <see cref="GetStreamingResponseAsync"/> and combines its updates.</remarks>
    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        DuQuantCompletion? completion = null;
        AdditionalPropertiesDictionary? extras = null;
        var updates = new List<ChatResponseUpdate>();
        await foreach (ChatResponseUpdate update in GetStreamingResponseAsync(messages, options, cancellationToken).ConfigureAwait(false))
        {
            updates.Add(update);
            if (update.RawRepresentation is DuQuantCompletion c)
            {
                completion = c;
                extras = update.AdditionalProperties;
            }
        }

        ChatResponse response = updates.ToChatResponse();
        response.RawRepresentation = completion;
        if (extras is not null)
        {
            response.AdditionalProperties ??= [];
            foreach ((string key, object? value) in extras)
            {
                response.AdditionalProperties[key] = value;
            }
        }

        return response;
    }

    /// <inheritdoc />
    /// <remarks>
    /// One update per decoded piece of text (never half a UTF-8 character); every update carries ResponseId, MessageId,
    /// CreatedAt, ModelId and the assistant role; the last one carries the FinishReason and a <see cref="UsageContent"/>,
    /// with <see cref="DuQuantCompletion"/> as its RawRepresentation.
    /// </remarks>
    /// <exception cref="DuQuantContextOverflowException">The conversation does not fit the context.</exception>
    /// <exception cref="DuQuantQueueFullException">Too many requests are waiting.</exception>
    /// <exception cref="LocalMxfp4.ChatClient.Constrained.JsonSchemaNotSupportedException">A response-format or tool-parameter schema uses a keyword constrained decoding cannot enforce.</exception>
    /// <exception cref="NotSupportedException">A requested feature (media content, a continuation token) is not available.</exception>
    /// <exception cref="ArgumentException">A ChatOptions value or a message is invalid.</exception>
    public IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        return Stream(messages, options, cancellationToken);
    }

    /// <inheritdoc />
    /// <remarks>
    /// Returns <see cref="ChatClientMetadata"/>, this client, and (loading the model if needed) the
    /// <see cref="IInferenceEngine"/>, the <see cref="LlmTokenizer"/>, the <see cref="IChatTemplate"/> and a
    /// <see cref="DuQuantBackendInfo"/>; null for any keyed request.
    /// </remarks>
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null)
        {
            return null;
        }

        if (serviceType == typeof(ChatClientMetadata))
        {
            return Metadata;
        }

        if (serviceType.IsInstanceOfType(this))
        {
            return this;
        }

        if (serviceType == typeof(DuQuantChatClientOptions))
        {
            return _options.Clone();
        }

        if (serviceType != typeof(IInferenceEngine) && serviceType != typeof(LlmTokenizer) && serviceType != typeof(IChatTemplate) && serviceType != typeof(DuQuantBackendInfo)
            && serviceType != typeof(ServingEngine))
        {
            return null;
        }

        if (_disposed != 0)
        {
            return null;
        }

        LoadedModel model = _model ?? EnsureLoadedAsync(CancellationToken.None).GetAwaiter().GetResult();
        if (serviceType == typeof(IInferenceEngine))
        {
            return model.Engine;
        }

        if (serviceType == typeof(ServingEngine))
        {
            return _serving?.Engine;
        }

        if (serviceType == typeof(LlmTokenizer))
        {
            return model.Tokenizer;
        }

        if (serviceType == typeof(IChatTemplate))
        {
            return model.Template;
        }

        EngineDescription d = model.Engine.Description;
        return new DuQuantBackendInfo(d.Backend, d.WeightFormat, d.ActivationFormat, d.Threads, model.ModelPath, ModelId, model.ContextLength,
            _options.MaxConcurrentRequests, model.Template.Name, model.Template.IsChatFormat,
            SupportsToolCalling: model.Template is IToolCallingChatTemplate, SupportsJsonResponseFormat: true);
    }

    /// <summary>
    /// Stops the workers (queued requests fail with <see cref="ObjectDisposedException"/>, running ones stop before
    /// their next token), waits for them, and releases the model. Safe to call more than once.
    /// </summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _loadLock.Wait();
        try
        {
            _serving?.Dispose();
            _model?.Dispose();
            _serving = null;
            _model = null;
        }
        finally
        {
            _loadLock.Release();
        }

        _metrics.Dispose();
        Log.Disposed(_logger, ModelId);
    }

    private async IAsyncEnumerable<ChatResponseUpdate> Stream(
        IEnumerable<ChatMessage> messages, ChatOptions? options, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        if (options?.ModelId is { Length: > 0 } requested && !string.Equals(requested, ModelId, StringComparison.OrdinalIgnoreCase))
        {
            throw new ArgumentException(
                $"ChatOptions.ModelId is '{requested}', but this client runs '{ModelId}'. Leave ModelId unset, or register one client per model (AddKeyedDuQuantChatClient).",
                nameof(options));
        }

        LoadedModel model = await EnsureLoadedAsync(cancellationToken).ConfigureAwait(false);
        ChatServing serving = _serving ?? throw new ObjectDisposedException(nameof(DuQuantChatClient));
        RequestPlan plan = RequestPlanner.Create(model, _options, messages, options, this, _logger, serving.Replies);

        string responseId = "duq-" + Guid.NewGuid().ToString("N");
        string messageId = "duqmsg-" + Guid.NewGuid().ToString("N");
        DateTimeOffset createdAt = DateTimeOffset.UtcNow;
        using var request = new GenerationRequest(plan, responseId, cancellationToken, serving.ShutdownToken);
        serving.Submit(request);
        bool finished = false;
        try
        {
            await foreach (GenerationEvent e in request.Events.ReadAllAsync(CancellationToken.None).ConfigureAwait(false))
            {
                ChatResponseUpdate update = e switch
                {
                    ContentEvent content => new ChatResponseUpdate(ChatRole.Assistant, [.. content.Contents]),
                    FinishEvent end => Final(end, plan),
                    _ => throw new UnreachableException(),
                };
                update.ResponseId = responseId;
                update.MessageId = messageId;
                update.CreatedAt = createdAt;
                update.ModelId = ModelId;
                finished = e is FinishEvent;
                yield return update;
            }
        }
        finally
        {
            if (!finished)
            {
                // The caller stopped reading (or an error ended the stream): free the slot now.
                request.Abandon();
            }
        }
    }

    private static ChatResponseUpdate Final(FinishEvent end, RequestPlan plan)
    {
        var update = new ChatResponseUpdate(ChatRole.Assistant, [new UsageContent(end.Usage)])
        {
            FinishReason = end.FinishReason,
            RawRepresentation = end.Completion,
        };
        if (plan.DroppedMessages > 0 || plan.IgnoredTools > 0)
        {
            update.AdditionalProperties = [];
            if (plan.DroppedMessages > 0)
            {
                update.AdditionalProperties["duquant.dropped_messages"] = plan.DroppedMessages;
            }

            if (plan.IgnoredTools > 0)
            {
                update.AdditionalProperties["duquant.ignored_tools"] = plan.IgnoredTools;
            }
        }

        return update;
    }

    private async ValueTask<LoadedModel> EnsureLoadedAsync(CancellationToken cancellationToken)
    {
        if (_model is { } loaded)
        {
            return loaded;
        }

        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        await _loadLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ObjectDisposedException.ThrowIf(_disposed != 0, this);
            if (_model is { } raced)
            {
                return raced;
            }

            Log.ModelLoading(_logger, _options.ModelPath!, _options.Backend.ToString());
            LoadedModel model;
            try
            {
                model = await Task.Run(() => LoadedModel.Load(_options), cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                Log.ModelLoadFailed(_logger, _options.ModelPath!, e);
                throw;
            }

            Install(model);
            return model;
        }
        finally
        {
            _loadLock.Release();
        }
    }

    private void Install(LoadedModel model)
    {
        EngineDescription d = model.Engine.Description;
        _serving = new ChatServing(model, _options, ModelId, _metrics, _logger);
        _model = model;
        Log.ModelLoaded(_logger, ModelId, model.ModelPath, model.LoadTime.TotalSeconds, d.Backend, d.WeightFormat, d.ActivationFormat, d.Threads, model.ContextLength, model.Template.Name);
    }

    private static string ModelIdFromPath(string path)
    {
        string trimmed = Path.TrimEndingDirectorySeparator(path);
        return Directory.Exists(trimmed) ? Path.GetFileName(trimmed) : Path.GetFileName(Path.GetDirectoryName(trimmed) ?? trimmed);
    }
}

/// <summary>What <see cref="DuQuantChatClient.WarmUpAsync"/> measured.</summary>
/// <param name="LoadTime">Time to load the model (zero when it was already loaded).</param>
/// <param name="TimeToFirstToken">Time from the warm-up request to its first token.</param>
public sealed record DuQuantWarmUpResult(TimeSpan LoadTime, TimeSpan TimeToFirstToken);
