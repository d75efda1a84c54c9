namespace LocalMxfp4.ChatClient;

/// <summary>What runs a <see cref="DuQuantChatClient"/>'s model; returned by <c>GetService(typeof(DuQuantBackendInfo))</c>.</summary>
/// <param name="Backend">The engine backend, e.g. "cpu".</param>
/// <param name="WeightFormat">The weight number format, e.g. "float32" or "mxfp4".</param>
/// <param name="ActivationFormat">The activation number format.</param>
/// <param name="Threads">Worker threads of the matrix products.</param>
/// <param name="ModelPath">The model directory or file that was loaded.</param>
/// <param name="ModelId">The reported model id.</param>
/// <param name="ContextLength">KV-cache tokens per request slot.</param>
/// <param name="MaxConcurrentRequests">Request slots.</param>
/// <param name="ChatTemplate">The prompt format's name.</param>
/// <param name="IsChatModel">False when the template only continues plain text (a non-chat model).</param>
/// <param name="SupportsToolCalling">
/// Whether the prompt shows <c>ChatOptions.Tools</c> to the model, so it may call them on its own (<c>ToolMode</c> Auto):
/// true for chat templates with a tool format (LLaMA-3.1). Required calls (RequireAny / RequireSpecific) work on every
/// model, through constrained decoding.
/// </param>
/// <param name="SupportsJsonResponseFormat">Whether JSON response formats (any JSON, JSON schema) are enforced by constrained decoding: always true.</param>
public sealed record DuQuantBackendInfo(
    string Backend,
    string WeightFormat,
    string ActivationFormat,
    int Threads,
    string ModelPath,
    string ModelId,
    int ContextLength,
    int MaxConcurrentRequests,
    string ChatTemplate,
    bool IsChatModel,
    bool SupportsToolCalling,
    bool SupportsJsonResponseFormat);
