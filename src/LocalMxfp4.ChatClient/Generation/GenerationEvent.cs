using Microsoft.Extensions.AI;

namespace LocalMxfp4.ChatClient.Generation;

/// <summary>What a worker sends to the caller's stream.</summary>
internal abstract record GenerationEvent;

/// <summary>A piece of the reply.</summary>
internal sealed record ContentEvent(IReadOnlyList<AIContent> Contents) : GenerationEvent;

/// <summary>The end of the reply.</summary>
internal sealed record FinishEvent(ChatFinishReason FinishReason, UsageDetails Usage, DuQuantCompletion Completion) : GenerationEvent;
