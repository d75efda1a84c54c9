using System.Diagnostics;
using LocalMxfp4.Engine.Contract;
using LocalMxfp4.Serving.Memory;
using LocalMxfp4.Serving.Scheduling;

namespace LocalMxfp4.Serving;

/// <summary>
/// One engine loop over a model, shared by every front end (the chat client, <c>lmx generate</c>, an HTTP server):
/// requests wait in a bounded FIFO queue, are admitted into a batch of up to
/// <see cref="ServingOptions.MaxBatchSequences"/> sequences, and every step runs the decode tokens of all running
/// sequences plus chunked prefill of newly admitted ones in one batched forward pass. KV memory is a pool of blocks
/// shared through a prefix cache, so a conversation's next turn (or another user's identical system prompt) only
/// computes what is new. Sequences join and leave between steps without disturbing the others: at temperature 0 a
/// request gives the same tokens alone, batched, preempted or on a cached prefix.
/// </summary>
/// <remarks>
/// Engines that implement <see cref="IBatchedInferenceEngine"/> (the CPU engine) run batched steps over paged memory.
/// Others (today the CUDA engine) run each sequence of a step on its own session, one after the other, with
/// prefix reuse per session. Thread-safe; observers are called on the loop's thread.
/// </remarks>
public sealed class ServingEngine : IDisposable
{
    private readonly IInferenceEngine _engine;
    private readonly IStepBackend _backend;
    private readonly StepScheduler _scheduler;
    private readonly WaitingQueue _waiting = new();
    private readonly Thread _loop;
    private readonly object _wake = new();
    private readonly List<ScheduledChunk> _step = [];
    private readonly List<Sequence> _admitted = [];
    private float[] _logits = [];
    private long _nextId;
    private volatile bool _stopping;
    private bool _signalled;
    private int _running;
    private int _disposed;
    private long _steps, _promptTokens, _cachedTokens, _decodeTokens, _completed, _failed;
    private long _decodeSteps, _decodeStepTokens, _decodeStepTicks;

    /// <summary>Starts the loop over <paramref name="engine"/> (not owned: dispose it after this).</summary>
    /// <exception cref="ArgumentOutOfRangeException">An option is invalid, or the context exceeds the model's.</exception>
    public ServingEngine(IInferenceEngine engine, ServingOptions options)
        : this(engine, options, batched: engine is IBatchedInferenceEngine)
    {
    }

    /// <summary>Chooses the backend explicitly: <paramref name="batched"/> false runs a batched engine on per-slot sessions too (tests, comparisons).</summary>
    internal ServingEngine(IInferenceEngine engine, ServingOptions options, bool batched)
    {
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (options.ContextLength > engine.Config.MaxPositions)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.ContextLength, $"ContextLength {options.ContextLength} exceeds the model's max_position_embeddings ({engine.Config.MaxPositions}).");
        }

        _engine = engine;
        Options = options;
        if (batched && engine is IBatchedInferenceEngine paged)
        {
            KvCacheTokens = ResolveKvTokens(options, paged.KvBytesPerToken(options.KvCachePrecision));
            _backend = new PagedBackend(paged, options, KvCacheTokens);
            Mode = "paged";
        }
        else
        {
            KvCacheTokens = (long)options.ContextLength * options.MaxBatchSequences;
            _backend = new SessionSlotBackend(engine, options);
            Mode = "session-slots";
        }

        _scheduler = new StepScheduler(options, _backend);
        _loop = new Thread(Loop) { IsBackground = true, Name = "lmx-serving" };
        _loop.Start();
    }

    /// <summary>The settings.</summary>
    public ServingOptions Options { get; }

    /// <summary>"paged" (batched steps over shared blocks) or "session-slots" (one session per slot).</summary>
    public string Mode { get; }

    /// <summary>Positions of KV memory in the pool (all slots' contexts for session slots).</summary>
    public long KvCacheTokens { get; }

    /// <summary>The engine.</summary>
    public IInferenceEngine Engine => _engine;

    /// <summary>Requests waiting for admission.</summary>
    public int QueuedCount
    {
        get
        {
            lock (_waiting.Gate)
            {
                return _waiting.Count;
            }
        }
    }

    /// <summary>Sequences admitted and generating.</summary>
    public int RunningCount => Volatile.Read(ref _running);

    /// <summary>Counters and the KV memory's state, read between steps.</summary>
    public ServingStatistics Statistics
    {
        get
        {
            lock (_step)
            {
                return new ServingStatistics(Mode, Interlocked.Read(ref _steps), Interlocked.Read(ref _promptTokens), Interlocked.Read(ref _cachedTokens),
                    Interlocked.Read(ref _decodeTokens), _scheduler.Preemptions, Interlocked.Read(ref _completed), Interlocked.Read(ref _failed),
                    RunningCount, QueuedCount, _backend.Statistics)
                {
                    DecodeSteps = Interlocked.Read(ref _decodeSteps),
                    DecodeStepTokens = Interlocked.Read(ref _decodeStepTokens),
                    DecodeStepTime = Stopwatch.GetElapsedTime(0, Interlocked.Read(ref _decodeStepTicks)),
                };
            }
        }
    }

    /// <summary>Queues a sequence. Its observer hears about it from the loop thread (or, if it is cancelled while queued, from the cancelling thread).</summary>
    /// <exception cref="ArgumentException">The prompt is empty, holds an id outside the vocabulary, or MaxOutputTokens is below 1.</exception>
    /// <exception cref="ContextOverflowException">The prompt leaves no room for a reply in <see cref="ServingOptions.ContextLength"/>.</exception>
    /// <exception cref="ServingQueueFullException">The queue is full.</exception>
    /// <exception cref="ObjectDisposedException">The engine loop was disposed.</exception>
    /// <exception cref="OperationCanceledException">The request's token is already cancelled.</exception>
    public void Submit(SequenceRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(request.PromptTokenIds);
        ArgumentNullException.ThrowIfNull(request.Observer);
        int vocab = _engine.Config.VocabularySize;
        if (request.PromptTokenIds.Count == 0)
        {
            throw new ArgumentException("The prompt needs at least one token (usually BOS).", nameof(request));
        }

        foreach (int id in request.PromptTokenIds)
        {
            if ((uint)id >= (uint)vocab)
            {
                throw new ArgumentException($"Prompt token id {id} is outside the vocabulary [0, {vocab}).", nameof(request));
            }
        }

        if (request.MaxOutputTokens < 1)
        {
            throw new ArgumentException($"MaxOutputTokens must be ≥ 1; got {request.MaxOutputTokens}.", nameof(request));
        }

        if (request.PromptTokenIds.Count >= Options.ContextLength)
        {
            throw new ContextOverflowException(0, request.PromptTokenIds.Count + 1, Options.ContextLength);
        }

        var sequence = new Sequence(request, Interlocked.Increment(ref _nextId));
        lock (_waiting.Gate)
        {
            ObjectDisposedException.ThrowIf(_stopping, this);
            request.CancellationToken.ThrowIfCancellationRequested();
            if (_waiting.Count >= Options.MaxQueuedRequests)
            {
                throw new ServingQueueFullException(Options.MaxQueuedRequests);
            }

            _waiting.AddLast(sequence);
        }

        if (request.CancellationToken.CanBeCanceled)
        {
            sequence.CancelRegistration = request.CancellationToken.Register(static state =>
            {
                var (engine, s) = ((ServingEngine, Sequence))state!;
                engine.CancelWaiting(s);
            }, (this, sequence));
        }

        Wake();
    }

    /// <summary>Stops the loop: queued and running sequences fail with <see cref="ObjectDisposedException"/>; waits for the current step.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        List<Sequence> queued;
        lock (_waiting.Gate)
        {
            _stopping = true;
            queued = _waiting.Drain();
        }

        // Queued requests end now, not after the step in flight.
        foreach (Sequence s in queued)
        {
            s.State = SequenceState.Finished;
            Fail(s, Disposed());
        }

        Wake();
        if (Thread.CurrentThread != _loop)
        {
            _loop.Join();
        }

        _backend.Dispose();
    }

    private static long ResolveKvTokens(ServingOptions options, long bytesPerToken)
    {
        if (options.KvCacheTokens is long explicitTokens)
        {
            return explicitTokens;
        }

        long full = (long)options.ContextLength * options.MaxBatchSequences;
        long affordable = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 4 / Math.Max(1, bytesPerToken);
        return Math.Max(options.ContextLength, Math.Min(full, affordable));
    }

    private void Wake()
    {
        lock (_wake)
        {
            _signalled = true;
            Monitor.Pulse(_wake);
        }
    }

    private void CancelWaiting(Sequence sequence)
    {
        bool removed;
        lock (_waiting.Gate)
        {
            removed = _waiting.Remove(sequence);
            if (removed)
            {
                sequence.State = SequenceState.Finished;
            }
        }

        if (removed)
        {
            Fail(sequence, new OperationCanceledException(sequence.Request.CancellationToken));
        }
        else
        {
            // Running: the loop notices before its next step.
            Wake();
        }
    }

    private void Loop()
    {
        while (true)
        {
            bool worked;
            try
            {
                if (_stopping)
                {
                    break;
                }

                worked = Step();
            }
            catch (Exception e)
            {
                // A fault of the loop itself (never expected): fail what it was running, keep serving the rest.
                FailAll(_scheduler.Running.ToList(), e);
                worked = true;
            }

            if (!worked)
            {
                lock (_wake)
                {
                    while (!_signalled)
                    {
                        Monitor.Wait(_wake);
                    }

                    _signalled = false;
                }
            }
        }

        List<Sequence> queued;
        lock (_waiting.Gate)
        {
            queued = _waiting.Drain();
        }

        FailAll([.. _scheduler.Running, .. queued], Disposed());
    }

    private static ObjectDisposedException Disposed() =>
        new(nameof(ServingEngine), "The serving engine was disposed while this request was queued or running.");

    /// <summary>Runs one step; false when there was nothing to run.</summary>
    private bool Step()
    {
        for (int i = _scheduler.Running.Count - 1; i >= 0; i--)
        {
            Sequence s = _scheduler.Running[i];
            if (s.Request.CancellationToken.IsCancellationRequested)
            {
                Leave(s);
                Fail(s, new OperationCanceledException(s.Request.CancellationToken));
            }
        }

        lock (_step)
        {
            _scheduler.Schedule(_waiting, _step, _admitted);
        }

        Volatile.Write(ref _running, _scheduler.Running.Count);
        long now = Stopwatch.GetTimestamp();
        foreach (Sequence s in _admitted)
        {
            if (s.CachedPromptTokens < 0)
            {
                s.AdmittedAt = now;
                s.CachedPromptTokens = Math.Min(s.Computed, s.PromptLength);
                Interlocked.Add(ref _cachedTokens, s.CachedPromptTokens);
                Guard(s, () => s.Request.Observer.OnAdmitted(s.CachedPromptTokens));
            }
        }

        if (_step.Count == 0)
        {
            if (_scheduler.Running.Count > 0)
            {
                // Running sequences that cannot get memory and nothing to preempt: fail them rather than spin.
                FailAll(_scheduler.Running.ToList(), new InvalidOperationException("KV memory is exhausted: no running sequence can make progress."));
            }

            return false;
        }

        int vocab = _engine.Config.VocabularySize;
        int logitRows = _step.Count(c => c.WantsLogits);
        if (_logits.Length < logitRows * vocab)
        {
            _logits = new float[logitRows * vocab];
        }

        bool decodeOnly = true;
        foreach (ScheduledChunk c in _step)
        {
            decodeOnly &= c.Count == 1 && c.Start >= c.Sequence.PromptLength;
        }

        long started = Stopwatch.GetTimestamp();
        try
        {
            _backend.Run(_step, _logits);
        }
        catch (Exception e)
        {
            FailAll(_step.Select(c => c.Sequence).Distinct().ToList(), e);
            return true;
        }

        Interlocked.Increment(ref _steps);
        if (decodeOnly)
        {
            Interlocked.Increment(ref _decodeSteps);
            Interlocked.Add(ref _decodeStepTokens, _step.Count);
            Interlocked.Add(ref _decodeStepTicks, Stopwatch.GetTimestamp() - started);
        }
        int row = 0;
        foreach (ScheduledChunk c in _step)
        {
            Sequence s = c.Sequence;
            if (c.Start < s.PromptLength)
            {
                Interlocked.Add(ref _promptTokens, Math.Min(c.Count, s.PromptLength - c.Start));
            }

            s.Computed = c.Start + c.Count;
            _backend.OnComputed(s);
            if (c.WantsLogits)
            {
                Sample(s, _logits.AsSpan(row * vocab, vocab));
                row++;
            }
        }

        Volatile.Write(ref _running, _scheduler.Running.Count);
        return true;
    }

    private void Sample(Sequence s, Span<float> logits)
    {
        int next;
        try
        {
            next = s.Selector.Select(logits);
        }
        catch (Exception e)
        {
            Leave(s);
            Fail(s, e);
            return;
        }

        long now = Stopwatch.GetTimestamp();
        if (s.Output.Count == 0)
        {
            s.FirstTokenAt = now;
        }

        s.LastTokenAt = now;
        s.Output.Add(next);
        Interlocked.Increment(ref _decodeTokens);
        bool stopToken = s.Request.StopTokenIds.Contains(next);
        bool keepGoing = true;
        try
        {
            keepGoing = s.Request.Observer.OnToken(next);
        }
        catch (Exception e)
        {
            Leave(s);
            Fail(s, e);
            return;
        }

        SequenceFinish? finish = stopToken ? SequenceFinish.StopToken : !keepGoing ? SequenceFinish.Observer : null;
        if (finish is null)
        {
            s.Selector.Append(next);
            s.Append(next);
            if (s.Output.Count >= s.Request.MaxOutputTokens)
            {
                finish = SequenceFinish.Length;
            }
            else if (s.Length > Options.ContextLength)
            {
                finish = SequenceFinish.ContextFull;
            }
        }

        if (finish is SequenceFinish f)
        {
            Leave(s);
            var result = new SequenceResult(
                s.PromptLength, s.CachedPromptTokens, s.Output, f,
                Stopwatch.GetElapsedTime(s.SubmittedAt, s.AdmittedAt),
                Stopwatch.GetElapsedTime(s.AdmittedAt, s.FirstTokenAt),
                Stopwatch.GetElapsedTime(s.SubmittedAt, s.FirstTokenAt),
                Stopwatch.GetElapsedTime(s.FirstTokenAt, s.LastTokenAt),
                s.Preemptions);
            s.CancelRegistration.Dispose();
            Interlocked.Increment(ref _completed);
            Guard(s, () => s.Request.Observer.OnCompleted(result));
        }
    }

    /// <summary>Takes a running sequence out of the batch and returns its memory.</summary>
    private void Leave(Sequence s)
    {
        _scheduler.Running.Remove(s);
        _backend.Release(s);
        s.State = SequenceState.Finished;
    }

    private void FailAll(List<Sequence> sequences, Exception error)
    {
        foreach (Sequence s in sequences)
        {
            if (s.State == SequenceState.Running)
            {
                Leave(s);
            }

            s.State = SequenceState.Finished;
            Fail(s, error);
        }

        Volatile.Write(ref _running, _scheduler.Running.Count);
    }

    private void Fail(Sequence s, Exception error)
    {
        s.CancelRegistration.Dispose();
        Interlocked.Increment(ref _failed);
        Guard(s, () => s.Request.Observer.OnFailed(error));
    }

    /// <summary>Observer calls must not take the loop down: an observer that throws on the way out has nowhere to go.</summary>
    private static void Guard(Sequence s, Action action)
    {
        try
        {
            action();
        }
        catch (Exception)
        {
            // The sequence is already ending; its observer failed to hear it.
        }
    }
}

/// <summary>A snapshot of a <see cref="ServingEngine"/>'s counters.</summary>
/// <param name="Mode">"paged" or "session-slots".</param>
/// <param name="Steps">Forward steps run.</param>
/// <param name="PromptTokensComputed">Prompt tokens computed (not taken from the prefix cache).</param>
/// <param name="PromptTokensCached">Prompt tokens reused from the prefix cache at admission.</param>
/// <param name="SampledTokens">Tokens sampled.</param>
/// <param name="Preemptions">Sequences preempted for memory.</param>
/// <param name="Completed">Sequences that ended normally.</param>
/// <param name="Failed">Sequences that ended with an error or a cancellation.</param>
/// <param name="Running">Sequences running now.</param>
/// <param name="Queued">Requests waiting now.</param>
/// <param name="Memory">The KV memory.</param>
public sealed record ServingStatistics(
    string Mode, long Steps, long PromptTokensComputed, long PromptTokensCached, long SampledTokens, long Preemptions,
    long Completed, long Failed, int Running, int Queued, KvMemoryStatistics Memory)
{
    /// <summary>Steps that only decoded (every chunk one sampled token fed back): the continuous-batching steady state.</summary>
    public long DecodeSteps { get; init; }

    /// <summary>Tokens those steps decoded (the sum of their batch sizes).</summary>
    public long DecodeStepTokens { get; init; }

    /// <summary>Forward time of those steps.</summary>
    public TimeSpan DecodeStepTime { get; init; }

    /// <summary>Aggregate decode speed over the decode-only steps, tokens per second (0 before any).</summary>
    public double DecodeTokensPerSecond => DecodeStepTime > TimeSpan.Zero ? DecodeStepTokens / DecodeStepTime.TotalSeconds : 0;
}
