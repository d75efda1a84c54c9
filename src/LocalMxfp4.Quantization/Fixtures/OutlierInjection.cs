using System.Runtime.InteropServices;
using LocalMxfp4.Engine.Loading;
using LocalMxfp4.Models.Checkpoint;
using LocalMxfp4.Models.Configuration;
using LocalMxfp4.Safetensors;

namespace LocalMxfp4.Quantization.Fixtures;

/// <summary>
/// Gives a float model LLaMA-3-like outlier channels without changing its function (test-models.md §2): for a few
/// seeded channels per linear input, the producer of the channel is multiplied by α ∈ [10, 100] and the consumer's
/// matching column divided by α. q/k/v and gate/up inputs scale the RMSNorm gain; the down input scales up_proj rows;
/// the o input scales v_proj rows and every o_proj column that reads that value channel (one per query head of the
/// KV group). Float outputs change only by rounding; MXFP4 without a transform suffers, as on real LLaMA-3.
/// </summary>
public static class OutlierInjection
{
    /// <summary>Which channels were scaled, per layer and site, for reports.</summary>
    public sealed record Injection(int Layer, string Site, int Channel, float Alpha);

    /// <summary>Injects outliers into <paramref name="model"/>'s arrays in place.</summary>
    public static IReadOnlyList<Injection> Apply(FloatModelTensors model, int seed, int channelsPerSite = 3, float minAlpha = 10, float maxAlpha = 100)
    {
        ArgumentNullException.ThrowIfNull(model);
        LlamaConfig c = model.Config;
        var rng = new Random(seed);
        var done = new List<Injection>();
        float Alpha() => minAlpha + ((float)rng.NextDouble() * (maxAlpha - minAlpha));
        int[] Channels(int width) => [.. Enumerable.Range(0, width).OrderBy(_ => rng.Next()).Take(Math.Min(channelsPerSite, width))];

        for (int i = 0; i < c.LayerCount; i++)
        {
            FloatLayerTensors l = model.Layers[i];
            foreach (int ch in Channels(c.HiddenSize))
            {
                float a = Alpha();
                l.AttentionNorm[ch] *= a;
                DivideColumn(l.Query, c.HiddenSize, ch, a);
                DivideColumn(l.Key, c.HiddenSize, ch, a);
                DivideColumn(l.Value, c.HiddenSize, ch, a);
                done.Add(new Injection(i, "qkv", ch, a));
            }

            foreach (int ch in Channels(c.HiddenSize))
            {
                float a = Alpha();
                l.MlpNorm[ch] *= a;
                DivideColumn(l.Gate, c.HiddenSize, ch, a);
                DivideColumn(l.Up, c.HiddenSize, ch, a);
                done.Add(new Injection(i, "gate/up", ch, a));
            }

            foreach (int ch in Channels(c.IntermediateSize))
            {
                float a = Alpha();
                ScaleRow(l.Up, c.HiddenSize, ch, a);
                DivideColumn(l.Down, c.IntermediateSize, ch, a);
                done.Add(new Injection(i, "down", ch, a));
            }

            int group = c.HeadCount / c.KeyValueHeadCount;
            foreach (int ch in Channels(c.KeyValueWidth))
            {
                float a = Alpha();
                ScaleRow(l.Value, c.HiddenSize, ch, a);
                int kvHead = ch / c.HeadDim, d = ch % c.HeadDim;
                for (int h = kvHead * group; h < (kvHead + 1) * group; h++)
                {
                    DivideColumn(l.Output, c.QueryWidth, (h * c.HeadDim) + d, a);
                }

                done.Add(new Injection(i, "o", ch, a));
            }
        }

        return done;
    }

    /// <summary>Reads the float model at <paramref name="source"/>, injects outliers, and writes an F32 checkpoint to <paramref name="output"/>.</summary>
    public static IReadOnlyList<Injection> WriteInjected(string source, string output, int seed, int channelsPerSite = 3, bool overwrite = false)
    {
        ModelDirectory dir = ModelDirectory.Resolve(source);
        LlamaConfig config = dir.LoadConfig();
        FloatModelTensors model;
        using (SafetensorsCheckpoint checkpoint = SafetensorsCheckpoint.Open(dir.Weights))
        {
            model = FloatModelLoader.ReadTensors(checkpoint, config);
        }

        IReadOnlyList<Injection> injections = Apply(model, seed, channelsPerSite);
        ModelDirectoryWriter.Write(output, overwrite, temp =>
        {
            File.Copy(Path.Combine(dir.Directory, "config.json"), Path.Combine(temp, "config.json"));
            ModelDirectoryWriter.CopyCompanionFiles(dir.Directory, temp);
            var writer = new SafetensorsWriter();
            writer.Metadata["format"] = "pt";
            writer.Metadata["outlier_injection_seed"] = seed.ToString(System.Globalization.CultureInfo.InvariantCulture);
            void Add(string name, float[] values, params long[] shape) => writer.Add(name, SafetensorsDType.F32, shape, MemoryMarshal.AsBytes(values.AsSpan()));
            int hidden = config.HiddenSize, inner = config.IntermediateSize;
            Add(LlamaTensorNames.Embedding, model.Embedding, config.VocabularySize, hidden);
            for (int i = 0; i < config.LayerCount; i++)
            {
                FloatLayerTensors l = model.Layers[i];
                LayerTensorNames n = LlamaTensorNames.Layer(i);
                Add(n.InputNorm, l.AttentionNorm, hidden);
                Add(n.Query, l.Query, config.QueryWidth, hidden);
                Add(n.Key, l.Key, config.KeyValueWidth, hidden);
                Add(n.Value, l.Value, config.KeyValueWidth, hidden);
                Add(n.Output, l.Output, hidden, config.QueryWidth);
                Add(n.PostAttentionNorm, l.MlpNorm, hidden);
                Add(n.Gate, l.Gate, inner, hidden);
                Add(n.Up, l.Up, inner, hidden);
                Add(n.Down, l.Down, hidden, inner);
            }

            Add(LlamaTensorNames.FinalNorm, model.FinalNorm, hidden);
            if (model.LmHead is not null)
            {
                Add(LlamaTensorNames.LmHead, model.LmHead, config.VocabularySize, hidden);
            }

            writer.Write(Path.Combine(temp, SafetensorsCheckpoint.SingleFileName));
        });
        return injections;
    }

    private static void DivideColumn(float[] matrix, int columns, int column, float alpha)
    {
        for (int r = 0; r < matrix.Length / columns; r++)
        {
            matrix[(r * columns) + column] /= alpha;
        }
    }

    private static void ScaleRow(float[] matrix, int columns, int row, float alpha) =>
        System.Numerics.Tensors.TensorPrimitives.Multiply(matrix.AsSpan(row * columns, columns), alpha, matrix.AsSpan(row * columns, columns));
}
