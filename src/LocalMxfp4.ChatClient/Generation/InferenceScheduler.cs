using System.Diagnostics;
using System.Runtime.InteropServices;
using LocalMxfp4.ChatClient.Loading;
using LocalMxfp4.ChatClient.Telemetry;
using LocalMxfp4.Engine.Contract;
using LocalMxfp4.Engine.Sampling;
using LocalMxfp4.Tokenization;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;

namespace LocalMxfp4.ChatClient.Generation;

/// <summary>
/// Runs requests on dedicated worker threads, one KV-cache session per worker, in FIFO order from a bounded queue.
/// A request cancelled while queued leaves the queue at once; one cancelled while running stops before its next
/// forward pass (within one token, or one prefill chunk) and its session is rewound for the next request.
/// </summary>
internal sealed class InferenceScheduler : IDisposable
{
    /// <summary>Prompt tokens per forward pass during prefill, so cancellation is noticed between chunks.</summary>
    internal const int PrefillChunk = 256;

    private readonly LoadedModel _model;
    private readonly DuQuantMetrics _metrics;
    private readonly ILogger _logger;
    private readonly string _modelId;
    private readonly int _maxQueued;
    private readonly object _gate = new();
    private readonly LinkedList<GenerationRequest> _queue = new();
    private readonly Thread[] _workers;
    private readonly CancellationTokenSource _shutdown = new();
    private readonly KeyValuePair<string, object?>[] _tags;
    private bool _stopping;
    private int _running;

    public InferenceScheduler(LoadedModel model, int workers, int maxQueued, string modelId, DuQuantMetrics metrics, ILogger logger)
    {
        _model = model;
        _metrics = metrics;
        _logger = logger;
        _modelId = modelId;
        _maxQueued = maxQueued;
        _tags =
        [
            new("gen_ai.operation.name", "chat"),
            new("gen_ai.provider.name", DuQuantTelemetry.ProviderName),
            new("gen_ai.request.model", modelId),
            new("gen_ai.response.model", modelId),
        ];
        _workers = new Thread[workers];
        for (int i = 0; i < workers; i++)
        {
            _workers[i] = new Thread(WorkerLoop) { IsBackground = true, Name = $"DuQuant worker {i}" };
            _workers[i].Start();
        }
    }

    public CancellationToken ShutdownToken => _shutdown.Token;

    /// <summary>Requests waiting for a slot.</summary>
    public int QueuedCount
    {
        get
        {
            lock (_gate)
            {
                return _queue.Count;
            }
        }
    }

    /// <summary>Requests generating now.</summary>
    public int RunningCount => Volatile.Read(ref _running);

    public void Enqueue(GenerationRequest request)
    {
        // Registered first: a cancellation that lands before the request is in the queue is seen by the check below.
        request.OnCancelWhileQueued(CancelQueued);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_stopping, typeof(DuQuantChatClient));
            if (request.Token.IsCancellationRequested)
            {
                throw request.CancellationError();
            }

            if (_queue.Count >= _maxQueued)
            {
                throw new DuQuantQueueFullException(_maxQueued);
            }

            request.Node = _queue.AddLast(request);
            _metrics.QueueLength.Add(1, _tags);
            Monitor.Pulse(_gate);
        }
    }

    public void Dispose()
    {
        List<GenerationRequest> abandoned;
        lock (_gate)
        {
            if (_stopping)
            {
                return;
            }

            _stopping = true;
            abandoned = [.. _queue];
            _queue.Clear();
            Monitor.PulseAll(_gate);
        }

        _shutdown.Cancel();
        foreach (GenerationRequest r in abandoned)
        {
            _metrics.QueueLength.Add(-1, _tags);
            r.Fail(r.CancellationError());
        }

        foreach (Thread worker in _workers)
        {
            if (worker != Thread.CurrentThread)
            {
                worker.Join();
            }
        }

        _shutdown.Dispose();
    }

    private void CancelQueued(GenerationRequest request)
    {
        bool removed;
        lock (_gate)
        {
            removed = request.Node?.List is not null;
            if (removed)
            {
                _queue.Remove(request.Node!);
            }
        }

        if (removed)
        {
            request.Fail(request.CancellationError());
            Safely(() =>
            {
                _metrics.QueueLength.Add(-1, _tags);
                Log.RequestCancelled(_logger, request.ResponseId, 0, "while queued");
            });
        }
    }

    private void WorkerLoop()
    {
        IInferenceSession? session = null;
        var logits = new float[_model.Engine.Config.VocabularySize];
        try
        {
            while (true)
            {
                GenerationRequest request;
                lock (_gate)
                {
                    while (_queue.Count == 0 && !_stopping)
                    {
                        Monitor.Wait(_gate);
                    }

                    if (_stopping)
                    {
                        return;
                    }

                    request = _queue.First!.Value;
                    _queue.RemoveFirst();
                }

                Safely(() => _metrics.QueueLength.Add(-1, _tags));
                Interlocked.Increment(ref _running);
                try
                {
                    request.EndQueuedRegistration();
                    session ??= _model.Engine.CreateSession(_model.ContextLength);
                    Run(request, session, logits);
                }
                catch (Exception e)
                {
                    // Session creation failed (out of memory, say), or a listener threw: the caller gets the error
                    // first, and nothing escapes this thread — an unhandled exception here would end the process.
                    request.Fail(e);
                    Safely(() => Log.RequestFailed(_logger, request.ResponseId, e));
                }
                finally
                {
                    Interlocked.Decrement(ref _running);
                    if (session is not null)
                    {
                        try
                        {
                            session.Rewind(0);
                        }
                        catch (Exception)
                        {
                            Safely(session.Dispose);
                            session = null;
                        }
                    }
                }
            }
        }
        finally
        {
            if (session is not null)
            {
                Safely(session.Dispose);
            }
        }
    }

    /// <summary>Runs telemetry or cleanup that must not take the worker thread (and with it the process) down.</summary>
    private static void Safely(Action action)
    {
        try
        {
            action();
        }
        catch (Exception)
        {
            // A throwing log provider, metrics listener or dispose has nowhere to go on a worker thread.
        }
    }

    private void Run(GenerationRequest request, IInferenceSession session, float[] logits)
    {
        RequestPlan plan = request.Plan;
        using Activity? activity = DuQuantTelemetry.Source.StartActivity($"chat {_modelId}", ActivityKind.Internal, request.ParentContext);
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

        long started = Stopwatch.GetTimestamp();
        TimeSpan queueTime = Stopwatch.GetElapsedTime(request.EnqueuedAt, started);
        var output = new List<int>(Math.Min(plan.MaxOutputTokens, 1024));
        try
        {
            CancellationToken token = request.Token;
            int[] prompt = [.. plan.PromptTokenIds];
            for (int offset = 0; offset < prompt.Length; offset += PrefillChunk)
            {
                token.ThrowIfCancellationRequested();
                session.Forward(prompt.AsSpan(offset, Math.Min(PrefillChunk, prompt.Length - offset)), logits);
            }

            TimeSpan prefillTime = Stopwatch.GetElapsedTime(started);
            var sampler = new Sampler(plan.Sampling);
            // Penalties look at the reply only (OpenAI semantics): the prompt's own words and the turn's control
            // tokens (<|eot_id|>, headers) must not be pushed down.
            var context = new List<int>(plan.MaxOutputTokens);
            StreamingDetokenizer detokenizer = _model.Tokenizer.CreateStreamingDetokenizer();
            var stops = new StopSequenceMatcher(plan.StopSequences);
            IResponseParser parser = plan.Parser;
            var single = new int[1];
            long firstTokenAt = 0;
            ChatFinishReason finish = ChatFinishReason.Length;
            while (true)
            {
                token.ThrowIfCancellationRequested();
                plan.TokenMask?.Apply(logits);
                int next = sampler.Sample(logits, CollectionsMarshal.AsSpan(context));
                if (plan.TokenMask is { } mask)
                {
                    // The sampler floors probabilities at exp(−87) rather than 0, so a masked token keeps a vanishing
                    // chance; the best allowed token replaces it (masked logits are still −∞ after the penalties).
                    if (!mask.IsAllowed(next))
                    {
                        next = Sampler.ArgMax(logits);
                    }

                    mask.Accept(next);
                }
                if (output.Count == 0)
                {
                    firstTokenAt = Stopwatch.GetTimestamp();
                }

                output.Add(next);
                if (_model.StopTokenIds.Contains(next))
                {
                    finish = ChatFinishReason.Stop;
                    break;
                }

                context.Add(next);
                if (_model.Tokenizer.IsSpecial(next))
                {
                    parser.OnSpecialToken(next);
                }

                Emit(request, parser.Append(stops.Push(detokenizer.Append(next))));
                if (stops.Matched is not null)
                {
                    finish = ChatFinishReason.Stop;
                    break;
                }

                if (output.Count >= plan.MaxOutputTokens || session.Position >= session.ContextLength)
                {
                    break;
                }

                single[0] = next;
                session.Forward(single, logits);
            }

            if (stops.Matched is null)
            {
                Emit(request, parser.Append(stops.Push(detokenizer.Flush())));
                Emit(request, parser.Append(stops.Flush()));
                if (stops.Matched is not null)
                {
                    finish = ChatFinishReason.Stop;
                }
            }

            Emit(request, parser.Complete());
            finish = parser.FinishReasonOverride ?? finish;
            long ended = Stopwatch.GetTimestamp();
            TimeSpan ttft = Stopwatch.GetElapsedTime(request.EnqueuedAt, firstTokenAt);
            TimeSpan decode = Stopwatch.GetElapsedTime(firstTokenAt, ended);
            var completion = new DuQuantCompletion(
                plan.PromptTokenIds, output, finish, stops.Matched, plan.DroppedMessages, queueTime, prefillTime, ttft, decode);
            var usage = new UsageDetails
            {
                InputTokenCount = prompt.Length,
                OutputTokenCount = output.Count,
                TotalTokenCount = prompt.Length + output.Count,
                AdditionalCounts = new AdditionalPropertiesDictionary<long>
                {
                    ["duquant.queue_ms"] = (long)queueTime.TotalMilliseconds,
                    ["duquant.prefill_ms"] = (long)prefillTime.TotalMilliseconds,
                    ["duquant.ttft_ms"] = (long)ttft.TotalMilliseconds,
                    ["duquant.decode_ms"] = (long)decode.TotalMilliseconds,
                },
            };
            Record(request, completion, Stopwatch.GetElapsedTime(request.EnqueuedAt, ended), session, activity);

            // The activity ends before the caller sees the end of the reply, so a listener has it by then.
            activity?.Stop();
            request.Write(new FinishEvent(finish, usage, completion));
            request.Complete();
        }
        catch (OperationCanceledException) when (request.Token.IsCancellationRequested)
        {
            request.Fail(request.CancellationError());
            Safely(() =>
            {
                activity?.SetStatus(ActivityStatusCode.Error, "cancelled");
                activity?.Stop();
                Log.RequestCancelled(_logger, request.ResponseId, output.Count, "while generating");
            });
        }
        catch (Exception e)
        {
            request.Fail(e);
            Safely(() =>
            {
                activity?.SetStatus(ActivityStatusCode.Error, e.Message);
                activity?.SetTag("error.type", e.GetType().FullName);
                activity?.Stop();
                Log.RequestFailed(_logger, request.ResponseId, e);
            });
        }
    }

    private static void Emit(GenerationRequest request, IReadOnlyList<AIContent> contents)
    {
        if (contents.Count > 0)
        {
            request.Write(new ContentEvent(contents));
        }
    }

    private void Record(GenerationRequest request, DuQuantCompletion c, TimeSpan total, IInferenceSession session, Activity? activity)
    {
        _metrics.QueueTime.Record(c.QueueTime.TotalSeconds, _tags);
        _metrics.TimeToFirstToken.Record(c.TimeToFirstToken.TotalSeconds, _tags);
        if (c.OutputTokenIds.Count > 1)
        {
            _metrics.TimePerOutputToken.Record(c.DecodeTime.TotalSeconds / (c.OutputTokenIds.Count - 1), _tags);
        }

        _metrics.RequestDuration.Record(total.TotalSeconds, _tags);
        _metrics.TokenUsage.Record(c.PromptTokenIds.Count, [.. _tags, new("gen_ai.token.type", "input")]);
        _metrics.TokenUsage.Record(c.OutputTokenIds.Count, [.. _tags, new("gen_ai.token.type", "output")]);
        if (c.PrefillTime > TimeSpan.Zero)
        {
            _metrics.PrefillThroughput.Record(c.PromptTokenIds.Count / c.PrefillTime.TotalSeconds, _tags);
        }

        _metrics.KvCacheUtilization.Record((double)session.Position / session.ContextLength, _tags);
        if (activity is not null)
        {
            activity.SetTag("gen_ai.usage.input_tokens", c.PromptTokenIds.Count);
            activity.SetTag("gen_ai.usage.output_tokens", c.OutputTokenIds.Count);
            activity.SetTag("gen_ai.response.finish_reasons", new[] { c.FinishReason.Value });
            activity.SetTag("duquant.queue_ms", c.QueueTime.TotalMilliseconds);
            activity.SetTag("duquant.time_to_first_token_ms", c.TimeToFirstToken.TotalMilliseconds);
        }

        Log.RequestCompleted(_logger, request.ResponseId, c.PromptTokenIds.Count, c.OutputTokenIds.Count, c.FinishReason.Value,
            c.QueueTime.TotalMilliseconds, c.TimeToFirstToken.TotalMilliseconds, c.DecodeTokensPerSecond);
    }
}
