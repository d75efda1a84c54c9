using LocalMxfp4.Engine.Contract;
using LocalMxfp4.Engine.Layers;
using LocalMxfp4.Models.Configuration;

namespace LocalMxfp4.Engine.Transformer;

/// <summary>The CPU engine: shared weights, one <see cref="TransformerSession"/> per sequence.</summary>
public sealed class CpuEngine : IInferenceEngine
{
    private readonly RotaryEmbedding _rope;
    private readonly ParallelRows _parallel;

    /// <summary>Runs <paramref name="weights"/> with the given threading.</summary>
    public CpuEngine(LlamaWeights weights, ParallelRows parallel, string weightFormat = "float32", string activationFormat = "float32")
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(parallel);
        Weights = weights;
        _parallel = parallel;
        _rope = new RotaryEmbedding(weights.Config);
        Description = new EngineDescription("cpu", weightFormat, activationFormat, parallel.Threads);
    }

    /// <summary>The parameters.</summary>
    public LlamaWeights Weights { get; }

    /// <inheritdoc />
    public LlamaConfig Config => Weights.Config;

    /// <inheritdoc />
    public EngineDescription Description { get; }

    /// <inheritdoc />
    public IInferenceSession CreateSession(int contextLength) => new TransformerSession(Weights, _rope, _parallel, contextLength);

    /// <inheritdoc />
    public void Dispose() => _parallel.Dispose();
}
