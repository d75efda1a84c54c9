using LocalMxfp4.ChatClient.Templates;
using LocalMxfp4.Engine.Contract;
using LocalMxfp4.Engine.Loading;

namespace LocalMxfp4.ChatClient;

/// <summary>
/// Settings of a <see cref="DuQuantChatClient"/>: which model to run, on what, with how much context, and the
/// defaults a request gets when its <c>ChatOptions</c> leave a field unset. Bind it from configuration
/// (section <c>"DuQuant"</c> by convention); it is validated when the host starts.
/// </summary>
public sealed class DuQuantChatClientOptions
{
    /// <summary>The conventional configuration section name.</summary>
    public const string SectionName = "DuQuant";

    /// <summary>
    /// The model: a Hugging Face model directory (config.json, safetensors, tokenizer files), or one
    /// <c>.safetensors</c> file inside such a directory. A relative path is resolved against the current directory.
    /// </summary>
    public string? ModelPath { get; set; }

    /// <summary>The model id reported in responses and metadata; defaults to the model directory's name.</summary>
    public string? ModelId { get; set; }

    /// <summary>Which backend runs the model (Auto picks CUDA when available, else CPU).</summary>
    public EngineBackend Backend { get; set; } = EngineBackend.Auto;

    /// <summary>CPU worker threads for the matrix products (0 = one per core).</summary>
    public int Threads { get; set; }

    /// <summary>The GPU to run on (CUDA device ordinal) when <see cref="Backend"/> is Auto or Cuda; null = device 0.</summary>
    public int? Device { get; set; }

    /// <summary>
    /// Tokens of KV cache per request slot: prompt plus reply must fit. Null = the model's maximum, capped at
    /// <see cref="DefaultContextLengthCap"/>. Memory grows linearly with it (per slot).
    /// </summary>
    public int? ContextLength { get; set; }

    /// <summary>The cap applied to the model's maximum when <see cref="ContextLength"/> is not set.</summary>
    public const int DefaultContextLengthCap = 4096;

    /// <summary>What to do when a conversation does not fit the context.</summary>
    public ContextOverflowPolicy ContextOverflowPolicy { get; set; } = ContextOverflowPolicy.Throw;

    /// <summary>Reply length when a request sets no <c>MaxOutputTokens</c>; always clamped to the context left after the prompt.</summary>
    public int DefaultMaxOutputTokens { get; set; } = 512;

    /// <summary>Default temperature (0 = greedy). Null: the model's generation_config.json, else 0.8.</summary>
    public float? Temperature { get; set; }

    /// <summary>Default nucleus mass in (0, 1]. Null: the model's generation_config.json, else 0.95.</summary>
    public float? TopP { get; set; }

    /// <summary>Default top-k (0 disables). Null: the model's generation_config.json, else disabled.</summary>
    public int? TopK { get; set; }

    /// <summary>Default CTRL-style repetition penalty (1 disables). Null: the model's generation_config.json, else 1.</summary>
    public float? RepetitionPenalty { get; set; }

    /// <summary>Default OpenAI-style frequency penalty (0 disables).</summary>
    public float FrequencyPenalty { get; set; }

    /// <summary>Default OpenAI-style presence penalty (0 disables).</summary>
    public float PresencePenalty { get; set; }

    /// <summary>How many recent tokens the penalties look at (0 = the whole context).</summary>
    public int PenaltyWindow { get; set; } = 64;

    /// <summary>Default sampling seed; null draws a random one per request.</summary>
    public int? Seed { get; set; }

    /// <summary>
    /// Requests that generate at the same time: the batch size of the engine loop. Every step decodes one token of each
    /// running request in one batched forward pass (each weight is read once for all of them), so more concurrent
    /// requests raise total throughput at a modest cost per request. Others wait in a FIFO queue.
    /// </summary>
    public int MaxConcurrentRequests { get; set; } = 4;

    /// <summary>
    /// Tokens one forward step processes at most: the decode tokens of the running requests first, then prompt chunks
    /// of newly admitted ones. Smaller values keep decoding requests flowing while a long prompt is read.
    /// </summary>
    public int MaxBatchTokens { get; set; } = 256;

    /// <summary>
    /// Positions of KV memory shared by running requests and the prefix cache. Null: enough for every concurrent request
    /// to fill <see cref="ContextLength"/>, capped at a quarter of the memory available to the process (never below one
    /// context). When it runs out, idle cached prefixes are evicted first, then the newest request is paused and
    /// recomputed later; no request that fits the context fails.
    /// </summary>
    public long? KvCacheTokens { get; set; }

    /// <summary>Number format of the KV cache (Float32 keeps the engine's reference numerics; BFloat16 halves the memory).</summary>
    public KvCachePrecision KvCachePrecision { get; set; } = KvCachePrecision.Float32;

    /// <summary>
    /// Reuse the keys and values of earlier requests that share a prompt prefix (a conversation's earlier turns, a
    /// common system prompt): only the new part of a prompt is computed. Reported in <c>UsageDetails.CachedInputTokenCount</c>.
    /// </summary>
    public bool PrefixCaching { get; set; } = true;

    /// <summary>Requests allowed to wait for a slot; one more is refused with <see cref="DuQuantQueueFullException"/>.</summary>
    public int MaxQueuedRequests { get; set; } = 256;

    /// <summary>Load the model and run a one-token generation when the host starts (with the hosted warm-up service).</summary>
    public bool WarmUpOnStart { get; set; } = true;

    /// <summary>The prompt format; Auto picks LLaMA-3 when the tokenizer has its header tokens, else plain text.</summary>
    public ChatTemplateKind ChatTemplate { get; set; } = ChatTemplateKind.Auto;

    /// <summary>A custom prompt format, used instead of <see cref="ChatTemplate"/> when set (code only, not bindable).</summary>
    public IChatTemplate? CustomChatTemplate { get; set; }

    /// <summary>A copy of these options.</summary>
    public DuQuantChatClientOptions Clone() => (DuQuantChatClientOptions)MemberwiseClone();
}

/// <summary>What a <see cref="DuQuantChatClient"/> does when a conversation does not fit the context.</summary>
public enum ContextOverflowPolicy
{
    /// <summary>Throw <see cref="DuQuantContextOverflowException"/> with the token counts (the default: nothing is lost silently).</summary>
    Throw = 0,

    /// <summary>
    /// Drop the oldest non-system messages (never the system prompt or the last message) until the prompt fits, and
    /// report how many were dropped in the response's <c>AdditionalProperties["duquant.dropped_messages"]</c>.
    /// </summary>
    DropOldestMessages = 1,
}

/// <summary>The built-in prompt formats.</summary>
public enum ChatTemplateKind
{
    /// <summary>LLaMA-3 when the tokenizer has <c>&lt;|start_header_id|&gt;</c>, <c>&lt;|end_header_id|&gt;</c> and <c>&lt;|eot_id|&gt;</c>; else plain text.</summary>
    Auto = 0,

    /// <summary>The LLaMA-3 / 3.1 instruct format (<see cref="Llama3ChatTemplate"/>).</summary>
    Llama3 = 1,

    /// <summary>Plain-text continuation for models that are not chat models (<see cref="PlainTextContinuationTemplate"/>).</summary>
    PlainText = 2,
}
