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
    public static LlamaWeights Load(SafetensorsCheckpoint checkpoint, LlamaConfig config, ParallelRows parallel)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        ArgumentNullException.ThrowIfNull(config);
        var reader = new TensorReader(checkpoint);
        int hidden = config.HiddenSize, inner = config.IntermediateSize;
        float[] embedding = reader.Read(LlamaTensorNames.Embedding, config.VocabularySize, hidden);
        var layers = new LlamaLayerWeights[config.LayerCount];
        for (int i = 0; i < config.LayerCount; i++)
        {
            LayerTensorNames n = LlamaTensorNames.Layer(i);
            layers[i] = new LlamaLayerWeights(
                reader.Read(n.InputNorm, hidden),
                reader.Linear(n.Query, config.QueryWidth, hidden, parallel),
                reader.Linear(n.Key, config.KeyValueWidth, hidden, parallel),
                reader.Linear(n.Value, config.KeyValueWidth, hidden, parallel),
                reader.Linear(n.Output, hidden, config.QueryWidth, parallel),
                reader.Read(n.PostAttentionNorm, hidden),
                reader.Linear(n.Gate, inner, hidden, parallel),
                reader.Linear(n.Up, inner, hidden, parallel),
                reader.Linear(n.Down, hidden, inner, parallel));
        }

        float[] finalNorm = reader.Read(LlamaTensorNames.FinalNorm, hidden);
        ILinear lmHead;
        if (checkpoint.TryGetTensor(LlamaTensorNames.LmHead, out _))
        {
            lmHead = reader.Linear(LlamaTensorNames.LmHead, config.VocabularySize, hidden, parallel);
        }
        else if (config.TieWordEmbeddings)
        {
            lmHead = new DenseLinear(embedding, config.VocabularySize, hidden, parallel);
        }
        else
        {
            throw new ModelLoadException(checkpoint.Path, LlamaTensorNames.LmHead, "missing, and config.json does not set tie_word_embeddings.");
        }

        return new LlamaWeights(config, embedding, layers, finalNorm, lmHead);
    }

    /// <summary>Opens the model at <paramref name="path"/> (directory or safetensors file) as a float32 CPU engine.</summary>
    public static CpuEngine LoadEngine(string path, int threads = 0)
    {
        ModelDirectory dir = ModelDirectory.Resolve(path);
        LlamaConfig config = dir.LoadConfig();
        var parallel = new ParallelRows(threads);
        using SafetensorsCheckpoint checkpoint = SafetensorsCheckpoint.Open(dir.Weights);
        return new CpuEngine(Load(checkpoint, config, parallel), parallel);
    }

    private sealed class TensorReader(SafetensorsCheckpoint checkpoint)
    {
        public float[] Read(string name, params int[] shape)
        {
            if (!checkpoint.TryGetTensor(name, out TensorInfo info))
            {
                throw new ModelLoadException(checkpoint.Path, name, "missing from the checkpoint.");
            }

            if (info.DType is not (SafetensorsDType.F32 or SafetensorsDType.F16 or SafetensorsDType.BF16))
            {
                throw new ModelLoadException(info.FilePath, name, $"dtype {SafetensorsDTypes.ToName(info.DType)} is not a float type (F32, F16, BF16).");
            }

            if (info.Shape.Count != shape.Length || !info.Shape.Select(d => d).SequenceEqual(shape.Select(d => (long)d)))
            {
                throw new ModelLoadException(info.FilePath, name, $"shape [{string.Join(", ", info.Shape)}] does not match config.json, which implies [{string.Join(", ", shape)}].");
            }

            return checkpoint.ReadSingle(name);
        }

        public DenseLinear Linear(string name, int outputs, int inputs, ParallelRows parallel) =>
            new(Read(name, outputs, inputs), outputs, inputs, parallel);
    }
}
