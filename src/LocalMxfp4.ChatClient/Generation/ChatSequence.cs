using System.Diagnostics;
using LocalMxfp4.ChatClient.Loading;
using LocalMxfp4.ChatClient.Telemetry;
using LocalMxfp4.ChatClient.Templates;
using LocalMxfp4.Serving;
using LocalMxfp4.Tokenization;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;

namespace LocalMxfp4.ChatClient.Generation;

/// <summary>
/// One chat request as the serving layer's engine loop sees it: turns each sampled token into text (UTF-8-safe),
/// matches stop strings across token boundaries, feeds the tool-call parser, and writes the caller's stream; at the
/// end it reports usage (cached prompt tokens included), metrics, the activity and the log line. Runs on the engine
/// loop's thread; every call is short and never blocks.
/// </summary>
internal sealed class ChatSequence : ISequenceObserver
{
    private readonly GenerationRequest _request;
    private readonly LoadedModel _model;
    private readonly DuQuantMetrics _metrics;
    private readonly ILogger _logger;
    private readonly KeyValuePair<string, object?>[] _tags;
    private readonly Activity? _activity;
    private readonly StreamingDetokenizer _detokenizer;
    private readonly StopSequenceMatcher _stops;
    private readonly IResponseParser _parser;
    private readonly List<int> _output = [];
    private readonly System.Text.StringBuilder _text = new();
    private readonly ReplyTokenCache? _replies;
    private int _queued = 1;

    public ChatSequence(GenerationRequest request, LoadedModel model, DuQuantMetrics metrics, ILogger logger, KeyValuePair<string, object?>[] tags, Activity? activity, ReplyTokenCache? replies)
    {
        _replies = replies;
        _request = request;
        _model = model;
        _metrics = metrics;
        _logger = logger;
        _tags = tags;
        _activity = activity;
        _detokenizer = model.Tokenizer.CreateStreamingDetokenizer();
        _stops = new StopSequenceMatcher(request.Plan.StopSequences);
        _parser = request.Plan.Parser;
        Safely(() => _metrics.QueueLength.Add(1, _tags));
    }

    public void OnAdmitted(int cachedTokens) => LeaveQueue();

    public bool OnToken(int tokenId)
    {
        _output.Add(tokenId);
        if (_model.StopTokenIds.Contains(tokenId))
        {
            return true;
        }

        if (_model.Tokenizer.IsSpecial(tokenId))
        {
            _parser.OnSpecialToken(tokenId);
        }

        Emit(_parser.Append(_stops.Push(_detokenizer.Append(tokenId))));
        return _stops.Matched is null;
    }

    public void OnCompleted(SequenceResult result)
    {
        LeaveQueue();
        try
        {
            RequestPlan plan = _request.Plan;
            ChatFinishReason finish = result.Finish is SequenceFinish.StopToken or SequenceFinish.Observer ? ChatFinishReason.Stop : ChatFinishReason.Length;
            if (_stops.Matched is null)
            {
                Emit(_parser.Append(_stops.Push(_detokenizer.Flush())));
                Emit(_parser.Append(_stops.Flush()));
                if (_stops.Matched is not null)
                {
                    finish = ChatFinishReason.Stop;
                }
            }

            Emit(_parser.Complete());
            finish = _parser.FinishReasonOverride ?? finish;
            RememberReply(result);
            var completion = new DuQuantCompletion(
                plan.PromptTokenIds, result.OutputTokenIds, finish, _stops.Matched, plan.DroppedMessages,
                result.QueueTime, result.PrefillTime, result.TimeToFirstToken, result.DecodeTime)
            {
                CachedPromptTokens = result.CachedPromptTokens,
                Preemptions = result.Preemptions,
            };
            int prompt = plan.PromptTokenIds.Count;
            var usage = new UsageDetails
            {
                InputTokenCount = prompt,
                OutputTokenCount = result.OutputTokenIds.Count,
                TotalTokenCount = prompt + result.OutputTokenIds.Count,
                CachedInputTokenCount = result.CachedPromptTokens,
                AdditionalCounts = new AdditionalPropertiesDictionary<long>
                {
                    ["duquant.queue_ms"] = (long)result.QueueTime.TotalMilliseconds,
                    ["duquant.prefill_ms"] = (long)result.PrefillTime.TotalMilliseconds,
                    ["duquant.ttft_ms"] = (long)result.TimeToFirstToken.TotalMilliseconds,
                    ["duquant.decode_ms"] = (long)result.DecodeTime.TotalMilliseconds,
                },
            };
            Safely(() => Record(completion, result));

            // The activity ends before the caller sees the end of the reply, so a listener has it by then.
            Safely(() => _activity?.Stop());
            _request.Write(new FinishEvent(finish, usage, completion));
            _request.Complete();
        }
        catch (Exception e)
        {
            // A parser or listener threw at the very end: the caller gets the error rather than a silent end.
            OnFailed(e);
        }
    }

    public void OnFailed(Exception error)
    {
        LeaveQueue();
        bool cancelled = error is OperationCanceledException && _request.Token.IsCancellationRequested;
        _request.Fail(cancelled ? _request.CancellationError() : error);
        Safely(() =>
        {
            if (cancelled)
            {
                _activity?.SetStatus(ActivityStatusCode.Error, "cancelled");
                Log.RequestCancelled(_logger, _request.ResponseId, _output.Count, _output.Count == 0 ? "before the first token" : "while generating");
            }
            else
            {
                _activity?.SetStatus(ActivityStatusCode.Error, error.Message);
                _activity?.SetTag("error.type", error.GetType().FullName);
                Log.RequestFailed(_logger, _request.ResponseId, error);
            }

            _activity?.Stop();
        });
    }

    /// <summary>Runs telemetry that must not take the engine loop down with a throwing listener.</summary>
    private static void Safely(Action action)
    {
        try
        {
            action();
        }
        catch (Exception)
        {
            // A throwing log provider or metrics listener has nowhere to go on the loop thread.
        }
    }

    private void LeaveQueue()
    {
        if (Interlocked.Exchange(ref _queued, 0) == 1)
        {
            Safely(() => _metrics.QueueLength.Add(-1, _tags));
        }
    }

    private void Emit(IReadOnlyList<AIContent> contents)
    {
        if (contents.Count > 0)
        {
            foreach (AIContent c in contents)
            {
                if (c is TextContent t)
                {
                    _text.Append(t.Text);
                }
            }

            _request.Write(new ContentEvent(contents));
        }
    }

    /// <summary>
    /// Keeps a plain-text reply's ids for the next turn's prompt when they decode to exactly the text the caller got
    /// (no stop string cut it and no special token hides in it).
    /// </summary>
    private void RememberReply(SequenceResult result)
    {
        if (_replies is null || _parser is not TextResponseParser || _stops.Matched is not null)
        {
            return;
        }

        IReadOnlyList<int> ids = result.OutputTokenIds;
        int count = ids.Count > 0 && _model.StopTokenIds.Contains(ids[^1]) ? ids.Count - 1 : ids.Count;
        string text = _text.ToString();
        if (count == 0 || text.Length == 0)
        {
            return;
        }

        for (int i = 0; i < count; i++)
        {
            if (_model.Tokenizer.IsSpecial(ids[i]))
            {
                return;
            }
        }

        _replies.Add(text, ids.Take(count).ToArray());
    }

    private void Record(DuQuantCompletion c, SequenceResult result)
    {
        TimeSpan total = c.QueueTime + c.PrefillTime + c.DecodeTime;
        _metrics.QueueTime.Record(c.QueueTime.TotalSeconds, _tags);
        _metrics.TimeToFirstToken.Record(c.TimeToFirstToken.TotalSeconds, _tags);
        if (c.OutputTokenIds.Count > 1)
        {
            _metrics.TimePerOutputToken.Record(c.DecodeTime.TotalSeconds / (c.OutputTokenIds.Count - 1), _tags);
        }

        _metrics.RequestDuration.Record(total.TotalSeconds, _tags);
        _metrics.TokenUsage.Record(c.PromptTokenIds.Count, [.. _tags, new("gen_ai.token.type", "input")]);
        _metrics.TokenUsage.Record(c.OutputTokenIds.Count, [.. _tags, new("gen_ai.token.type", "output")]);
        _metrics.CachedInputTokens.Record(result.CachedPromptTokens, _tags);
        int computed = c.PromptTokenIds.Count - result.CachedPromptTokens;
        if (c.PrefillTime > TimeSpan.Zero && computed > 0)
        {
            _metrics.PrefillThroughput.Record(computed / c.PrefillTime.TotalSeconds, _tags);
        }

        _metrics.KvCacheUtilization.Record(Math.Min(1.0, (double)(c.PromptTokenIds.Count + c.OutputTokenIds.Count) / _model.ContextLength), _tags);
        if (_activity is not null)
        {
            _activity.SetTag("gen_ai.usage.input_tokens", c.PromptTokenIds.Count);
            _activity.SetTag("gen_ai.usage.output_tokens", c.OutputTokenIds.Count);
            _activity.SetTag("gen_ai.usage.cache_read.input_tokens", result.CachedPromptTokens);
            _activity.SetTag("gen_ai.response.finish_reasons", new[] { c.FinishReason.Value });
            _activity.SetTag("duquant.queue_ms", c.QueueTime.TotalMilliseconds);
            _activity.SetTag("duquant.time_to_first_token_ms", c.TimeToFirstToken.TotalMilliseconds);
            _activity.SetTag("duquant.preemptions", result.Preemptions);
        }

        Log.RequestCompleted(_logger, _request.ResponseId, c.PromptTokenIds.Count, c.OutputTokenIds.Count, c.FinishReason.Value,
            c.QueueTime.TotalMilliseconds, c.TimeToFirstToken.TotalMilliseconds, c.DecodeTokensPerSecond);
    }
}
