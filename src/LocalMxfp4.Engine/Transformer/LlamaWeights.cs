using LocalMxfp4.Engine.Layers;
using LocalMxfp4.Models.Configuration;

namespace LocalMxfp4.Engine.Transformer;

/// <summary>One decoder layer's parameters. Norm gains stay float32; the projections are whatever <see cref="ILinear"/> the backend loaded.</summary>
public sealed record LlamaLayerWeights(
    float[] AttentionNorm,
    ILinear Query,
    ILinear Key,
    ILinear Value,
    ILinear Output,
    float[] MlpNorm,
    ILinear Gate,
    ILinear Up,
    ILinear Down);

/// <summary>All parameters of a LLaMA model, checked against its configuration.</summary>
public sealed record LlamaWeights
{
    /// <summary>Binds and validates the parameters.</summary>
    public LlamaWeights(LlamaConfig config, float[] embedding, IReadOnlyList<LlamaLayerWeights> layers, float[] finalNorm, ILinear lmHead)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(embedding);
        ArgumentNullException.ThrowIfNull(layers);
        ArgumentNullException.ThrowIfNull(finalNorm);
        ArgumentNullException.ThrowIfNull(lmHead);
        Expect(embedding.LongLength == (long)config.VocabularySize * config.HiddenSize, "embedding", $"{config.VocabularySize}×{config.HiddenSize} floats");
        Expect(layers.Count == config.LayerCount, "layers", $"{config.LayerCount} layers");
        Expect(finalNorm.Length == config.HiddenSize, "final norm", $"{config.HiddenSize} floats");
        CheckLinear(lmHead, config.HiddenSize, config.VocabularySize, "lm_head");
        for (int i = 0; i < layers.Count; i++)
        {
            LlamaLayerWeights l = layers[i];
            string p = $"layer {i} ";
            Expect(l.AttentionNorm.Length == config.HiddenSize, p + "input norm", $"{config.HiddenSize} floats");
            Expect(l.MlpNorm.Length == config.HiddenSize, p + "post-attention norm", $"{config.HiddenSize} floats");
            CheckLinear(l.Query, config.HiddenSize, config.QueryWidth, p + "q_proj");
            CheckLinear(l.Key, config.HiddenSize, config.KeyValueWidth, p + "k_proj");
            CheckLinear(l.Value, config.HiddenSize, config.KeyValueWidth, p + "v_proj");
            CheckLinear(l.Output, config.QueryWidth, config.HiddenSize, p + "o_proj");
            CheckLinear(l.Gate, config.HiddenSize, config.IntermediateSize, p + "gate_proj");
            CheckLinear(l.Up, config.HiddenSize, config.IntermediateSize, p + "up_proj");
            CheckLinear(l.Down, config.IntermediateSize, config.HiddenSize, p + "down_proj");
        }

        Config = config;
        Embedding = embedding;
        Layers = layers;
        FinalNorm = finalNorm;
        LmHead = lmHead;
    }

    /// <summary>The architecture.</summary>
    public LlamaConfig Config { get; }

    /// <summary>Token embeddings <c>[vocabulary, hidden]</c>.</summary>
    public float[] Embedding { get; }

    /// <summary>Decoder layers in order.</summary>
    public IReadOnlyList<LlamaLayerWeights> Layers { get; }

    /// <summary>The norm before the lm_head.</summary>
    public float[] FinalNorm { get; }

    /// <summary>Hidden state → vocabulary logits (the embedding itself when tied).</summary>
    public ILinear LmHead { get; }

    private static void CheckLinear(ILinear linear, int input, int output, string name) =>
        Expect(linear.InputSize == input && linear.OutputSize == output, name, $"[{output}, {input}], got [{linear.OutputSize}, {linear.InputSize}]");

    private static void Expect(bool ok, string what, string expected)
    {
        if (!ok)
        {
            throw new ArgumentException($"Model weights: {what} should be {expected}.");
        }
    }
}
