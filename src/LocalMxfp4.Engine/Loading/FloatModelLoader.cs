using LocalMxfp4.Engine.Layers;
using LocalMxfp4.Engine.Transformer;
using LocalMxfp4.Models.Checkpoint;
using LocalMxfp4.Models.Configuration;
using LocalMxfp4.Safetensors;

namespace LocalMxfp4.Engine.Loading;

/// <summary>
/// Loads a Hugging Face LLaMA checkpoint (F32, F16 or BF16 safetensors, single file or sharded) into float32
/// weights for the reference engine. Every tensor's presence, dtype and shape is checked against config.json
/// before anything is computed, and a mismatch names the file and tensor.
/// </summary>
public static class FloatModelLoader
{
    /// <summary>Loads weights described by <paramref name="config"/> from <paramref name="checkpoint"/>.</summary>
    public static LlamaWeights Load(SafetensorsCheckpoint checkpoint, LlamaConfig config, ParallelRows parallel) =>
        ReadTensors(checkpoint, config).ToWeights(parallel);

    /// <summary>Reads every tensor as float32 arrays, checked against <paramref name="config"/>.</summary>
    public static FloatModelTensors ReadTensors(SafetensorsCheckpoint checkpoint, LlamaConfig config)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        ArgumentNullException.ThrowIfNull(config);
        var reader = new CheckpointTensorReader(checkpoint);
        int hidden = config.HiddenSize, inner = config.IntermediateSize;
        float[] embedding = reader.Float(LlamaTensorNames.Embedding, config.VocabularySize, hidden);
        var layers = new FloatLayerTensors[config.LayerCount];
        for (int i = 0; i < config.LayerCount; i++)
        {
            LayerTensorNames n = LlamaTensorNames.Layer(i);
            layers[i] = new FloatLayerTensors
            {
                AttentionNorm = reader.Float(n.InputNorm, hidden),
                Query = reader.Float(n.Query, config.QueryWidth, hidden),
                Key = reader.Float(n.Key, config.KeyValueWidth, hidden),
                Value = reader.Float(n.Value, config.KeyValueWidth, hidden),
                Output = reader.Float(n.Output, hidden, config.QueryWidth),
                MlpNorm = reader.Float(n.PostAttentionNorm, hidden),
                Gate = reader.Float(n.Gate, inner, hidden),
                Up = reader.Float(n.Up, inner, hidden),
                Down = reader.Float(n.Down, hidden, inner),
            };
        }

        float[] finalNorm = reader.Float(LlamaTensorNames.FinalNorm, hidden);
        float[]? lmHead = null;
        if (checkpoint.TryGetTensor(LlamaTensorNames.LmHead, out _))
        {
            lmHead = reader.Float(LlamaTensorNames.LmHead, config.VocabularySize, hidden);
        }
        else if (!config.TieWordEmbeddings)
        {
            throw new ModelLoadException(checkpoint.Path, LlamaTensorNames.LmHead, "missing, and config.json does not set tie_word_embeddings.");
        }

        return new FloatModelTensors(config, embedding, layers, finalNorm, lmHead);
    }

    /// <summary>Opens the model at <paramref name="path"/> (directory or safetensors file) as a float32 CPU engine.</summary>
    public static CpuEngine LoadEngine(string path, int threads = 0)
    {
        ModelDirectory dir = ModelDirectory.Resolve(path);
        LlamaConfig config = dir.LoadConfig();
        var parallel = new ParallelRows(threads);
        try
        {
            using SafetensorsCheckpoint checkpoint = SafetensorsCheckpoint.Open(dir.Weights);
            return new CpuEngine(Load(checkpoint, config, parallel), parallel);
        }
        catch
        {
            parallel.Dispose(); // a failed load must not leave worker threads behind
            throw;
        }
    }
}
