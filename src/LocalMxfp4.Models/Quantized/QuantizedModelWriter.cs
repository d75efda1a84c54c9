using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using LocalMxfp4.Models.Checkpoint;
using LocalMxfp4.Numerics;
using LocalMxfp4.Numerics.Mxfp4;
using LocalMxfp4.Safetensors;

namespace LocalMxfp4.Models.Quantized;

/// <summary>
/// Writes a <see cref="QuantizedModel"/> as a self-contained Hugging Face-style directory (config.json with
/// <c>quantization_config</c>, safetensors, generation config and tokenizer files copied from the source). Everything
/// is written into a temporary sibling directory and renamed into place at the end, so an interrupted run leaves
/// nothing that loads as a model, and an existing directory is replaced only after the new one is complete.
/// </summary>
public static class QuantizedModelWriter
{
    /// <summary>Shard size above which weights are split (Hugging Face's usual 5 GB, kept under 4 GiB here).</summary>
    public const long MaxShardBytes = 4L << 30;

    /// <summary>Writes <paramref name="model"/> to <paramref name="outputDirectory"/>.</summary>
    /// <param name="model">The quantized model.</param>
    /// <param name="sourceDirectory">The float model it came from (config.json is kept, tokenizer files are copied).</param>
    /// <param name="outputDirectory">Where the model goes.</param>
    /// <param name="overwrite">Replace an existing non-empty directory; otherwise that is an error.</param>
    public static void Write(QuantizedModel model, string sourceDirectory, string outputDirectory, bool overwrite = false)
    {
        ArgumentNullException.ThrowIfNull(model);
        ModelDirectoryWriter.Write(outputDirectory, overwrite, temp =>
        {
            WriteConfig(model, sourceDirectory, temp);
            ModelDirectoryWriter.CopyCompanionFiles(sourceDirectory, temp);
            WriteTensors(model, temp);
        });
    }

    private static void WriteConfig(QuantizedModel model, string sourceDirectory, string temp)
    {
        string sourceConfig = Path.Combine(sourceDirectory, "config.json");
        JsonNode config = JsonNode.Parse(File.ReadAllText(sourceConfig)) as JsonObject
            ?? throw new ModelLoadException(sourceConfig, null, "the top level must be a JSON object.");
        config["torch_dtype"] = "bfloat16";
        config["quantization_config"] = model.Quantization.ToJson();
        File.WriteAllText(Path.Combine(temp, "config.json"), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    private static void WriteTensors(QuantizedModel model, string temp)
    {
        var tensors = new List<PendingTensor>();
        int hidden = model.Config.HiddenSize;
        tensors.Add(BFloat16Tensor(LlamaTensorNames.Embedding, model.Embedding, model.Config.VocabularySize, hidden));
        for (int i = 0; i < model.Layers.Count; i++)
        {
            QuantizedLayer l = model.Layers[i];
            LayerTensorNames n = LlamaTensorNames.Layer(i);
            tensors.Add(FloatTensor(n.InputNorm, l.AttentionNorm, hidden));
            AddMatrix(tensors, n.Query, l.Query);
            AddMatrix(tensors, n.Key, l.Key);
            AddMatrix(tensors, n.Value, l.Value);
            AddMatrix(tensors, n.Output, l.Output);
            tensors.Add(FloatTensor(n.PostAttentionNorm, l.MlpNorm, hidden));
            AddMatrix(tensors, n.Gate, l.Gate);
            AddMatrix(tensors, n.Up, l.Up);
            AddMatrix(tensors, n.Down, l.Down);
            AddTransform(tensors, QuantizedTensorNames.QkvTransform(i), l.QkvTransform);
            AddTransform(tensors, QuantizedTensorNames.OutputTransform(i), l.OutputTransform);
            AddTransform(tensors, QuantizedTensorNames.GateUpTransform(i), l.GateUpTransform);
            AddTransform(tensors, QuantizedTensorNames.DownTransform(i), l.DownTransform);
        }

        tensors.Add(FloatTensor(LlamaTensorNames.FinalNorm, model.FinalNorm, hidden));
        if (model.LmHead is not null)
        {
            tensors.Add(BFloat16Tensor(LlamaTensorNames.LmHead, model.LmHead, model.Config.VocabularySize, hidden));
        }

        var metadata = new Dictionary<string, string> { ["format"] = "pt", ["quantization"] = "localmxfp4-mxfp4" };
        long total = tensors.Sum(t => (long)t.Data.Length);
        if (total <= MaxShardBytes)
        {
            var writer = new SafetensorsWriter();
            foreach ((string key, string value) in metadata)
            {
                writer.Metadata[key] = value;
            }

            foreach (PendingTensor t in tensors)
            {
                writer.Add(t.Name, t.DType, t.Shape, t.Data);
            }

            writer.Write(Path.Combine(temp, SafetensorsCheckpoint.SingleFileName));
        }
        else
        {
            SafetensorsWriter.WriteSharded(temp, tensors, MaxShardBytes, metadata);
        }
    }

    private static void AddMatrix(List<PendingTensor> tensors, string weightName, Mxfp4Matrix m)
    {
        tensors.Add(new PendingTensor(QuantizedTensorNames.Blocks(weightName), SafetensorsDType.U8, [m.Rows, m.Blocks, 16], m.Packed));
        tensors.Add(new PendingTensor(QuantizedTensorNames.Scales(weightName), SafetensorsDType.U8, [m.Rows, m.Blocks], m.Scales));
    }

    private static void AddTransform(List<PendingTensor> tensors, string name, InputTransform? t)
    {
        if (t is null)
        {
            return;
        }

        long[] shape = t.IsShared ? [32, 32] : [t.Blocks, 32, 32];
        tensors.Add(new PendingTensor(name, SafetensorsDType.F32, shape, MemoryMarshal.AsBytes(t.Matrices.AsSpan()).ToArray()));
    }

    private static PendingTensor FloatTensor(string name, float[] values, params long[] shape) =>
        new(name, SafetensorsDType.F32, shape, MemoryMarshal.AsBytes(values.AsSpan()).ToArray());

    private static PendingTensor BFloat16Tensor(string name, float[] values, params long[] shape)
    {
        var bits = new ushort[values.Length];
        BFloat16.FromSingle(values, bits);
        return new PendingTensor(name, SafetensorsDType.BF16, shape, MemoryMarshal.AsBytes(bits.AsSpan()).ToArray());
    }
}
