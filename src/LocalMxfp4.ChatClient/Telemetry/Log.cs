using Microsoft.Extensions.Logging;

namespace LocalMxfp4.ChatClient.Telemetry;

/// <summary>Source-generated log messages. Prompt and reply text is never logged.</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "Loading model {ModelPath} (backend {Backend})")]
    public static partial void ModelLoading(ILogger logger, string modelPath, string backend);

    [LoggerMessage(EventId = 2, Level = LogLevel.Information,
        Message = "Loaded model {ModelId} from {ModelPath} in {LoadSeconds:F2} s: {Backend} {WeightFormat}/{ActivationFormat}, {Threads} threads, context {ContextLength}, template {Template}")]
    public static partial void ModelLoaded(ILogger logger, string modelId, string modelPath, double loadSeconds, string backend, string weightFormat, string activationFormat, int threads, int contextLength, string template);

    [LoggerMessage(EventId = 3, Level = LogLevel.Error, Message = "Loading model {ModelPath} failed")]
    public static partial void ModelLoadFailed(ILogger logger, string modelPath, Exception exception);

    [LoggerMessage(EventId = 4, Level = LogLevel.Information, Message = "Warm-up of {ModelId} done: load {LoadSeconds:F2} s, time to first token {FirstTokenMilliseconds:F1} ms")]
    public static partial void WarmUpCompleted(ILogger logger, string modelId, double loadSeconds, double firstTokenMilliseconds);

    [LoggerMessage(EventId = 5, Level = LogLevel.Information, Message = "Warm-up of {ModelId} skipped (WarmUpOnStart = false); the model loads on the first request")]
    public static partial void WarmUpSkipped(ILogger logger, string modelId);

    [LoggerMessage(EventId = 10, Level = LogLevel.Debug,
        Message = "Request {ResponseId} done: {InputTokens} input, {OutputTokens} output tokens, finish {FinishReason}, queue {QueueMilliseconds:F1} ms, first token {FirstTokenMilliseconds:F1} ms, {TokensPerSecond:F1} tok/s")]
    public static partial void RequestCompleted(ILogger logger, string responseId, int inputTokens, int outputTokens, string finishReason, double queueMilliseconds, double firstTokenMilliseconds, double tokensPerSecond);

    [LoggerMessage(EventId = 11, Level = LogLevel.Debug, Message = "Request {ResponseId} cancelled after {OutputTokens} output tokens ({Where})")]
    public static partial void RequestCancelled(ILogger logger, string responseId, int outputTokens, string where);

    [LoggerMessage(EventId = 12, Level = LogLevel.Error, Message = "Request {ResponseId} failed")]
    public static partial void RequestFailed(ILogger logger, string responseId, Exception exception);

    [LoggerMessage(EventId = 13, Level = LogLevel.Warning,
        Message = "Dropped the {Dropped} oldest messages so the prompt ({PromptTokens} tokens) fits the context of {ContextLength} (ContextOverflowPolicy = DropOldestMessages)")]
    public static partial void MessagesDropped(ILogger logger, int dropped, int promptTokens, int contextLength);

    [LoggerMessage(EventId = 14, Level = LogLevel.Warning, Message = "{ToolCount} tools in ChatOptions.Tools were not given to the model: {Reason}")]
    public static partial void ToolsIgnored(ILogger logger, int toolCount, string reason);

    [LoggerMessage(EventId = 15, Level = LogLevel.Debug, Message = "ChatOptions.AdditionalProperties key '{Key}' is not one DuQuantChatClient reads; ignored")]
    public static partial void UnknownAdditionalProperty(ILogger logger, string key);

    [LoggerMessage(EventId = 20, Level = LogLevel.Debug, Message = "DuQuantChatClient for {ModelId} disposed")]
    public static partial void Disposed(ILogger logger, string modelId);
}
