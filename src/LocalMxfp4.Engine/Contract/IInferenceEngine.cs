using LocalMxfp4.Models.Configuration;

namespace LocalMxfp4.Engine.Contract;

/// <summary>
/// A loaded model that can run the LLaMA forward pass. Backends (float reference, W4A4 CPU, CUDA) implement this
/// one contract, so the CLI, the generator and the chat client run any of them unchanged. An engine holds the
/// weights and is shared; each conversation runs in its own <see cref="IInferenceSession"/> with its own KV cache.
/// </summary>
public interface IInferenceEngine : IDisposable
{
    /// <summary>The model's architecture.</summary>
    LlamaConfig Config { get; }

    /// <summary>What runs the model, for diagnostics and <c>GetService</c>.</summary>
    EngineDescription Description { get; }

    /// <summary>Creates a session whose KV cache holds up to <paramref name="contextLength"/> tokens.</summary>
    IInferenceSession CreateSession(int contextLength);
}

/// <summary>Which backend and number format an engine runs.</summary>
/// <param name="Backend">For example "cpu".</param>
/// <param name="WeightFormat">For example "float32" or "mxfp4".</param>
/// <param name="ActivationFormat">For example "float32" or "mxfp4".</param>
/// <param name="Threads">Worker threads used by the matrix products.</param>
public sealed record EngineDescription(string Backend, string WeightFormat, string ActivationFormat, int Threads);
