using System.Collections.Concurrent;
using LocalMxfp4.Engine.Attention;
using LocalMxfp4.Engine.Contract;
using LocalMxfp4.Engine.Layers;
using LocalMxfp4.Models.Configuration;

namespace LocalMxfp4.Engine.Transformer;

/// <summary>The CPU engine: shared weights and one <see cref="LlamaTransformer"/>; sessions or batched steps over paged KV memory.</summary>
public sealed class CpuEngine : IBatchedInferenceEngine
{
    private readonly ParallelRows _parallel;
    private readonly ConcurrentBag<ForwardWorkspace> _workspaces = [];

    /// <summary>Runs <paramref name="weights"/> with the given threading.</summary>
    public CpuEngine(LlamaWeights weights, ParallelRows parallel, string weightFormat = "float32", string activationFormat = "float32")
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(parallel);
        Weights = weights;
        _parallel = parallel;
        Transformer = new LlamaTransformer(weights, parallel);
        Description = new EngineDescription("cpu", weightFormat, activationFormat, parallel.Threads);
    }

    /// <summary>The parameters.</summary>
    public LlamaWeights Weights { get; }

    /// <summary>The forward pass.</summary>
    public LlamaTransformer Transformer { get; }

    /// <inheritdoc />
    public LlamaConfig Config => Weights.Config;

    /// <inheritdoc />
    public EngineDescription Description { get; }

    /// <inheritdoc />
    public IInferenceSession CreateSession(int contextLength) => new TransformerSession(Transformer, contextLength);

    /// <inheritdoc />
    public long KvBytesPerToken(KvCachePrecision precision) => PagedKvCache.BytesPerToken(Config, precision);

    /// <inheritdoc />
    public IPagedKvCache CreatePagedKvCache(int blocks, int blockSize, KvCachePrecision precision) => new PagedKvCache(Config, blocks, blockSize, precision);

    /// <inheritdoc />
    public void ForwardBatch(IPagedKvCache cache, ReadOnlySpan<BatchSequence> batch, Span<float> logits)
    {
        if (cache is not PagedKvCache paged)
        {
            throw new ArgumentException("The KV cache was not created by this engine (CreatePagedKvCache).", nameof(cache));
        }

        ForwardWorkspace workspace = _workspaces.TryTake(out ForwardWorkspace? w) ? w : new ForwardWorkspace(Config);
        try
        {
            Transformer.Forward(workspace, paged, batch, logits);
        }
        finally
        {
            _workspaces.Add(workspace);
        }
    }

    /// <inheritdoc />
    public void Dispose() => _parallel.Dispose();
}
