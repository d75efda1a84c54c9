using LocalMxfp4.Engine.Layers;
using LocalMxfp4.Engine.Transformer;
using LocalMxfp4.Models.Quantized;
using LocalMxfp4.Numerics.Mxfp4;

namespace LocalMxfp4.Engine.Loading;

/// <summary>Builds the W4A4 CPU engine from a model written by <c>lmx quantize</c>.</summary>
public static class QuantizedModelLoader
{
    /// <summary>Reads, validates and loads the quantized model at <paramref name="path"/>.</summary>
    public static CpuEngine LoadEngine(string path, int threads = 0, Mxfp4KernelKind? kernel = null)
    {
        QuantizedModel model = QuantizedModelReader.Read(path);
        var parallel = new ParallelRows(threads);
        try
        {
            return new CpuEngine(Build(model, parallel, kernel), parallel, "mxfp4", "mxfp4");
        }
        catch
        {
            parallel.Dispose(); // a failed load must not leave worker threads behind
            throw;
        }
    }

    /// <summary>The W4A4 layers of <paramref name="model"/>: each projection an <see cref="Mxfp4Linear"/> with its site's online transform.</summary>
    public static LlamaWeights Build(QuantizedModel model, ParallelRows parallel, Mxfp4KernelKind? kernel = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ScaleRule rule = model.Quantization.ActivationScaleRule;
        ILinear Linear(Mxfp4Matrix m, BlockTransform? t) => new Mxfp4Linear(m, t, rule, parallel, kernel);
        static BlockTransform? Transform(InputTransform? t) => t is null ? null : new BlockTransform(t.Matrices, t.Blocks);

        var layers = model.Layers.Select(l =>
        {
            // One transform object per site: q/k/v (and gate/up) then share one activation quantization.
            BlockTransform? qkv = Transform(l.QkvTransform), gateUp = Transform(l.GateUpTransform);
            return new LlamaLayerWeights(
                l.AttentionNorm,
                Linear(l.Query, qkv),
                Linear(l.Key, qkv),
                Linear(l.Value, qkv),
                Linear(l.Output, Transform(l.OutputTransform)),
                l.MlpNorm,
                Linear(l.Gate, gateUp),
                Linear(l.Up, gateUp),
                Linear(l.Down, Transform(l.DownTransform)));
        }).ToArray();
        int vocab = model.Config.VocabularySize, hidden = model.Config.HiddenSize;
        ILinear lmHead = Bf16Linear.FromSingle(model.LmHead ?? model.Embedding, vocab, hidden, parallel);
        return new LlamaWeights(model.Config, model.Embedding, layers, model.FinalNorm, lmHead);
    }
}
