using System.Text.Json;
using LocalMxfp4.Models.Checkpoint;
using LocalMxfp4.Models.Configuration;
using LocalMxfp4.Numerics.Mxfp4;
using LocalMxfp4.Safetensors;

namespace LocalMxfp4.Models.Quantized;

/// <summary>
/// Reads a model written by <c>lmx quantize</c>, checking every tensor against config.json before anything runs:
/// presence, dtype, shape, block counts, scale bytes (no NaN 0xFF), transform shapes and finiteness. A failure names
/// the file and tensor.
/// </summary>
public static class QuantizedModelReader
{
    /// <summary>True when the model at <paramref name="path"/> declares a LocalMxfp4 <c>quantization_config</c>.</summary>
    public static bool IsQuantized(string path)
    {
        ModelDirectory dir = ModelDirectory.Resolve(path);
        return dir.LoadConfig().QuantizationConfig is { ValueKind: JsonValueKind.Object } q
            && q.TryGetProperty("quant_method", out JsonElement m) && m.ValueKind == JsonValueKind.String;
    }

    /// <summary>Reads and validates the quantized model at <paramref name="path"/>.</summary>
    public static QuantizedModel Read(string path)
    {
        ModelDirectory dir = ModelDirectory.Resolve(path);
        LlamaConfig config = dir.LoadConfig();
        string configPath = Path.Combine(dir.Directory, "config.json");
        if (config.QuantizationConfig is not { } qjson)
        {
            throw new ModelConfigException(configPath, "quantization_config", "missing: this is not a quantized model (run lmx quantize).");
        }

        QuantizationConfig quantization = QuantizationConfig.Parse(qjson, configPath);
        using SafetensorsCheckpoint checkpoint = SafetensorsCheckpoint.Open(dir.Weights);
        var r = new Reader(checkpoint);
        int hidden = config.HiddenSize, inner = config.IntermediateSize;
        float[] embedding = r.Float(LlamaTensorNames.Embedding, config.VocabularySize, hidden);
        var layers = new QuantizedLayer[config.LayerCount];
        for (int i = 0; i < config.LayerCount; i++)
        {
            LayerTensorNames n = LlamaTensorNames.Layer(i);
            layers[i] = new QuantizedLayer(
                r.Float(n.InputNorm, hidden),
                r.Matrix(n.Query, config.QueryWidth, hidden),
                r.Matrix(n.Key, config.KeyValueWidth, hidden),
                r.Matrix(n.Value, config.KeyValueWidth, hidden),
                r.Matrix(n.Output, hidden, config.QueryWidth),
                r.Float(n.PostAttentionNorm, hidden),
                r.Matrix(n.Gate, inner, hidden),
                r.Matrix(n.Up, inner, hidden),
                r.Matrix(n.Down, hidden, inner),
                r.Transform(QuantizedTensorNames.QkvTransform(i), hidden),
                r.Transform(QuantizedTensorNames.OutputTransform(i), config.QueryWidth),
                r.Transform(QuantizedTensorNames.GateUpTransform(i), hidden),
                r.Transform(QuantizedTensorNames.DownTransform(i), inner));
        }

        RequireTransforms(quantization, layers, checkpoint.Path);
        float[] finalNorm = r.Float(LlamaTensorNames.FinalNorm, hidden);
        float[]? lmHead = null;
        if (checkpoint.TryGetTensor(LlamaTensorNames.LmHead, out _))
        {
            lmHead = r.Float(LlamaTensorNames.LmHead, config.VocabularySize, hidden);
        }
        else if (!config.TieWordEmbeddings)
        {
            throw new ModelLoadException(checkpoint.Path, LlamaTensorNames.LmHead, "missing, and config.json does not set tie_word_embeddings.");
        }

        return new QuantizedModel(config, quantization, embedding, layers, finalNorm, lmHead);
    }

    /// <summary>
    /// Weights were rotated (and smoothed) offline, so a missing transform would run silently wrong: every site must
    /// have one unless the model is plain RTN, and with smoothing the o_proj transform must be per block (it carries
    /// the divisor).
    /// </summary>
    private static void RequireTransforms(QuantizationConfig q, QuantizedLayer[] layers, string path)
    {
        if (q.Method == TransformMethod.Rtn && q.SmoothingAlpha == 0)
        {
            return;
        }

        for (int i = 0; i < layers.Length; i++)
        {
            QuantizedLayer l = layers[i];
            (InputTransform? t, string name)[] sites =
            [
                (l.QkvTransform, QuantizedTensorNames.QkvTransform(i)), (l.OutputTransform, QuantizedTensorNames.OutputTransform(i)),
                (l.GateUpTransform, QuantizedTensorNames.GateUpTransform(i)), (l.DownTransform, QuantizedTensorNames.DownTransform(i)),
            ];
            foreach ((InputTransform? t, string name) in sites)
            {
                if (t is null)
                {
                    throw new ModelLoadException(path, name, $"missing, but the model was quantized with method {QuantizationConfig.Name(q.Method)} (α {q.SmoothingAlpha}); its weights expect this transform.");
                }
            }

            if (q.SmoothingAlpha > 0 && l.OutputTransform!.IsShared)
            {
                throw new ModelLoadException(path, QuantizedTensorNames.OutputTransform(i), "is one shared [32, 32] matrix, but with smoothing the o_proj input transform must be per block (it carries the smoothing divisor).");
            }
        }
    }

    private sealed class Reader(SafetensorsCheckpoint checkpoint)
    {
        private readonly CheckpointTensorReader _floats = new(checkpoint);

        public float[] Float(string name, params int[] shape) => _floats.Float(name, shape);

        public Mxfp4Matrix Matrix(string weightName, int rows, int columns)
        {
            int blocks = Mxfp4Codec.BlockCount(columns);
            string blocksName = QuantizedTensorNames.Blocks(weightName), scalesName = QuantizedTensorNames.Scales(weightName);
            TensorInfo b = Get(blocksName), s = Get(scalesName);
            ExpectU8(b);
            ExpectU8(s);
            ExpectShape(b, [rows, blocks, 16]);
            ExpectShape(s, [rows, blocks]);
            byte[] scales = checkpoint.GetBytes(scalesName).ToArray();
            int nan = Array.IndexOf(scales, E8M0.NaN);
            if (nan >= 0)
            {
                throw new ModelLoadException(s.FilePath, scalesName, $"scale byte 0xFF (NaN) at row {nan / blocks}, block {nan % blocks}; a weight scale must be finite.");
            }

            return new Mxfp4Matrix(rows, columns, checkpoint.GetBytes(blocksName).ToArray(), scales);
        }

        public InputTransform? Transform(string name, int inputWidth)
        {
            if (!checkpoint.TryGetTensor(name, out TensorInfo info))
            {
                return null;
            }

            int blocks = Mxfp4Codec.BlockCount(inputWidth);
            if (info.DType != SafetensorsDType.F32)
            {
                throw new ModelLoadException(info.FilePath, name, $"dtype {SafetensorsDTypes.ToName(info.DType)}: input transforms are F32.");
            }

            bool shared = info.Shape.SequenceEqual([32L, 32L]);
            if (!shared && !info.Shape.SequenceEqual([blocks, 32L, 32L]))
            {
                throw new ModelLoadException(info.FilePath, name, $"shape [{string.Join(", ", info.Shape)}]; an input transform is [32, 32] or [{blocks}, 32, 32] for an input of {inputWidth}.");
            }

            float[] m = checkpoint.ReadSingle(name);
            int bad = Array.FindIndex(m, v => !float.IsFinite(v));
            if (bad >= 0)
            {
                throw new ModelLoadException(info.FilePath, name, $"element {bad} is {m[bad]}; transforms must be finite.");
            }

            return new InputTransform(m, blocks);
        }

        private TensorInfo Get(string name) => _floats.Get(name);

        private static void ExpectU8(TensorInfo info)
        {
            if (info.DType != SafetensorsDType.U8)
            {
                throw new ModelLoadException(info.FilePath, info.Name, $"dtype {SafetensorsDTypes.ToName(info.DType)}; MXFP4 planes are U8.");
            }
        }

        private static void ExpectShape(TensorInfo info, long[] shape) => CheckpointTensorReader.ExpectShape(info, shape);
    }
}
