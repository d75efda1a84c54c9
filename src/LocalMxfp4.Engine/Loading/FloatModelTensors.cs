using LocalMxfp4.Engine.Layers;
using LocalMxfp4.Engine.Transformer;
using LocalMxfp4.Models.Configuration;

namespace LocalMxfp4.Engine.Loading;

/// <summary>One decoder layer's float32 parameters as plain arrays (row-major <c>[out, in]</c> matrices).</summary>
public sealed class FloatLayerTensors
{
    /// <summary>Input RMSNorm gain.</summary>
    public required float[] AttentionNorm { get; set; }

    /// <summary>q_proj.</summary>
    public required float[] Query { get; set; }

    /// <summary>k_proj.</summary>
    public required float[] Key { get; set; }

    /// <summary>v_proj.</summary>
    public required float[] Value { get; set; }

    /// <summary>o_proj.</summary>
    public required float[] Output { get; set; }

    /// <summary>Post-attention RMSNorm gain.</summary>
    public required float[] MlpNorm { get; set; }

    /// <summary>gate_proj.</summary>
    public required float[] Gate { get; set; }

    /// <summary>up_proj.</summary>
    public required float[] Up { get; set; }

    /// <summary>down_proj.</summary>
    public required float[] Down { get; set; }

    /// <summary>A deep copy (the quantizer folds transforms into copies, never into the caller's arrays).</summary>
    public FloatLayerTensors Clone() => new()
    {
        AttentionNorm = (float[])AttentionNorm.Clone(),
        Query = (float[])Query.Clone(),
        Key = (float[])Key.Clone(),
        Value = (float[])Value.Clone(),
        Output = (float[])Output.Clone(),
        MlpNorm = (float[])MlpNorm.Clone(),
        Gate = (float[])Gate.Clone(),
        Up = (float[])Up.Clone(),
        Down = (float[])Down.Clone(),
    };
}

/// <summary>A float checkpoint's parameters as mutable arrays: what the quantizer transforms and the reference engine runs.</summary>
/// <param name="Config">The architecture.</param>
/// <param name="Embedding">Token embeddings <c>[vocab, hidden]</c>.</param>
/// <param name="Layers">Decoder layers.</param>
/// <param name="FinalNorm">The norm before the lm_head.</param>
/// <param name="LmHead">The lm_head, or null when tied to the embedding.</param>
public sealed record FloatModelTensors(LlamaConfig Config, float[] Embedding, IReadOnlyList<FloatLayerTensors> Layers, float[] FinalNorm, float[]? LmHead)
{
    /// <summary>Float32 dense layers over these arrays (not copied).</summary>
    public LlamaWeights ToWeights(ParallelRows parallel)
    {
        int hidden = Config.HiddenSize, inner = Config.IntermediateSize, q = Config.QueryWidth, kv = Config.KeyValueWidth;
        var layers = Layers.Select(l => new LlamaLayerWeights(
            l.AttentionNorm,
            new DenseLinear(l.Query, q, hidden, parallel),
            new DenseLinear(l.Key, kv, hidden, parallel),
            new DenseLinear(l.Value, kv, hidden, parallel),
            new DenseLinear(l.Output, hidden, q, parallel),
            l.MlpNorm,
            new DenseLinear(l.Gate, inner, hidden, parallel),
            new DenseLinear(l.Up, inner, hidden, parallel),
            new DenseLinear(l.Down, hidden, inner, parallel))).ToArray();
        return new LlamaWeights(Config, Embedding, layers, FinalNorm, LmHeadLinear(parallel));
    }

    /// <summary>The lm_head as a dense layer (the embedding when tied).</summary>
    public DenseLinear LmHeadLinear(ParallelRows parallel) => new(LmHead ?? Embedding, Config.VocabularySize, Config.HiddenSize, parallel);
}
