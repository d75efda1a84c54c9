using System.Runtime.InteropServices;
using System.Text.Json;
using LocalMxfp4.Models.Configuration;
using LocalMxfp4.Models.Quantized;
using LocalMxfp4.Numerics;
using LocalMxfp4.Numerics.Mxfp4;

namespace LocalMxfp4.Models.Gguf;

/// <summary>
/// Exports a LocalMxfp4 MXFP4 model to GGUF for llama.cpp (and LLamaSharp, Ollama, LM Studio): every linear layer's
/// E2M1 nibbles and E8M0 scales are re-laid as ggml <c>block_mxfp4</c> (the same bits, so both engines read identical
/// weights), embeddings and lm_head as BF16, norms as F32, the LLaMA-3 tokenizer from <c>tokenizer.json</c>, and
/// <c>rope_freqs</c> for llama3 RoPE scaling. q/k rows are permuted from Hugging Face's rotate-half order to the
/// interleaved pairs llama.cpp's LLaMA RoPE rotates, as llama.cpp's own converter does.
/// </summary>
public static class GgufExporter
{
    /// <summary>Writes <paramref name="model"/> (read from <paramref name="modelDirectory"/>) to <paramref name="output"/>.</summary>
    /// <exception cref="NotSupportedException">The model has online input transforms (DuQuant++, Hadamard), which llama.cpp cannot apply.</exception>
    public static void Export(QuantizedModel model, string modelDirectory, string output)
    {
        ArgumentNullException.ThrowIfNull(model);
        LlamaConfig c = model.Config;
        if (model.Layers.Any(l => l.QkvTransform is not null || l.OutputTransform is not null || l.GateUpTransform is not null || l.DownTransform is not null))
        {
            throw new NotSupportedException($"{modelDirectory}: a {QuantizationConfig.Name(model.Quantization.Method)} model rotates its activations online, which llama.cpp cannot do; only RTN models export to GGUF with the same function.");
        }

        var g = new GgufWriter();
        g.Add("general.architecture", "llama");
        g.Add("general.name", Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(modelDirectory))));
        g.Add("llama.context_length", (uint)c.MaxPositions);
        g.Add("llama.embedding_length", (uint)c.HiddenSize);
        g.Add("llama.block_count", (uint)c.LayerCount);
        g.Add("llama.feed_forward_length", (uint)c.IntermediateSize);
        g.Add("llama.attention.head_count", (uint)c.HeadCount);
        g.Add("llama.attention.head_count_kv", (uint)c.KeyValueHeadCount);
        g.Add("llama.attention.key_length", (uint)c.HeadDim);
        g.Add("llama.attention.value_length", (uint)c.HeadDim);
        g.Add("llama.rope.dimension_count", (uint)c.HeadDim);
        g.Add("llama.rope.freq_base", (float)c.RopeTheta);
        g.Add("llama.attention.layer_norm_rms_epsilon", (float)c.RmsNormEpsilon);
        g.Add("llama.vocab_size", (uint)c.VocabularySize);
        AddTokenizer(g, modelDirectory, c);

        int hidden = c.HiddenSize;
        AddBf16(g, "token_embd.weight", model.Embedding, c.VocabularySize, hidden);
        if (c.RopeScaling is RopeScaling scaling)
        {
            var factors = new float[c.HeadDim / 2];
            for (int i = 0; i < factors.Length; i++)
            {
                double f = 1.0 / Math.Pow(c.RopeTheta, 2.0 * i / c.HeadDim);
                factors[i] = (float)(f / scaling.Scale(f));
            }

            AddF32(g, "rope_freqs.weight", factors, factors.Length);
        }

        for (int i = 0; i < model.Layers.Count; i++)
        {
            QuantizedLayer l = model.Layers[i];
            string p = $"blk.{i}.";
            AddF32(g, p + "attn_norm.weight", l.AttentionNorm, hidden);
            AddMxfp4(g, p + "attn_q.weight", l.Query, RopeRowOrder(c.HeadCount, c.HeadDim));
            AddMxfp4(g, p + "attn_k.weight", l.Key, RopeRowOrder(c.KeyValueHeadCount, c.HeadDim));
            AddMxfp4(g, p + "attn_v.weight", l.Value, null);
            AddMxfp4(g, p + "attn_output.weight", l.Output, null);
            AddF32(g, p + "ffn_norm.weight", l.MlpNorm, hidden);
            AddMxfp4(g, p + "ffn_gate.weight", l.Gate, null);
            AddMxfp4(g, p + "ffn_up.weight", l.Up, null);
            AddMxfp4(g, p + "ffn_down.weight", l.Down, null);
        }

        AddF32(g, "output_norm.weight", model.FinalNorm, hidden);
        if (model.LmHead is float[] head)
        {
            AddBf16(g, "output.weight", head, c.VocabularySize, hidden);
        }

        g.Write(output);
    }

    /// <summary>
    /// The source row of each output row of a q or k projection: within a head, llama.cpp pairs rows (2i, 2i+1) where
    /// Hugging Face pairs (i, i + d/2).
    /// </summary>
    internal static int[] RopeRowOrder(int heads, int headDim)
    {
        var order = new int[heads * headDim];
        int half = headDim / 2;
        for (int h = 0; h < heads; h++)
        {
            for (int i = 0; i < half; i++)
            {
                order[(h * headDim) + (2 * i)] = (h * headDim) + i;
                order[(h * headDim) + (2 * i) + 1] = (h * headDim) + half + i;
            }
        }

        return order;
    }

    private static void AddMxfp4(GgufWriter g, string name, Mxfp4Matrix m, int[]? rowOrder)
    {
        if (m.Columns % 32 != 0)
        {
            throw new NotSupportedException($"{name}: {m.Columns} columns is not a whole number of MXFP4 blocks.");
        }

        int blocks = m.Blocks;
        g.AddTensor(name, GgmlType.MXFP4, [(ulong)m.Columns, (ulong)m.Rows], (long)m.Rows * blocks * 17, s =>
        {
            var row = new byte[blocks * 17];
            for (int r = 0; r < m.Rows; r++)
            {
                int source = rowOrder?[r] ?? r;
                LlamaCppMxfp4Block.FromInterleaved(m.Packed.AsSpan(source * blocks * 16, blocks * 16), m.Scales.AsSpan(source * blocks, blocks), row);
                s.Write(row);
            }
        });
    }

    private static void AddBf16(GgufWriter g, string name, float[] values, int rows, int columns) =>
        g.AddTensor(name, GgmlType.BF16, [(ulong)columns, (ulong)rows], (long)rows * columns * 2, s =>
        {
            var bits = new ushort[columns];
            for (int r = 0; r < rows; r++)
            {
                BFloat16.FromSingle(values.AsSpan(r * columns, columns), bits);
                s.Write(MemoryMarshal.AsBytes(bits.AsSpan()));
            }
        });

    private static void AddF32(GgufWriter g, string name, float[] values, int count) =>
        g.AddTensor(name, GgmlType.F32, [(ulong)count], (long)count * 4, s => s.Write(MemoryMarshal.AsBytes(values.AsSpan(0, count))));

    /// <summary>The byte-level BPE vocabulary, merges and special tokens of a Hugging Face <c>tokenizer.json</c>.</summary>
    private static void AddTokenizer(GgufWriter g, string directory, LlamaConfig c)
    {
        string path = Path.Combine(directory, "tokenizer.json");
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"{directory}: GGUF export needs tokenizer.json (a byte-level BPE tokenizer such as LLaMA-3's).", path);
        }

        using JsonDocument doc = JsonDocument.Parse(File.ReadAllBytes(path));
        JsonElement model = doc.RootElement.GetProperty("model");
        var tokens = new string[c.VocabularySize];
        var types = new int[c.VocabularySize];
        foreach (JsonProperty p in model.GetProperty("vocab").EnumerateObject())
        {
            int id = p.Value.GetInt32();
            if ((uint)id < (uint)tokens.Length)
            {
                tokens[id] = p.Name;
                types[id] = 1; // normal
            }
        }

        if (doc.RootElement.TryGetProperty("added_tokens", out JsonElement added))
        {
            foreach (JsonElement t in added.EnumerateArray())
            {
                int id = t.GetProperty("id").GetInt32();
                if ((uint)id < (uint)tokens.Length)
                {
                    tokens[id] = t.GetProperty("content").GetString()!;
                    types[id] = t.TryGetProperty("special", out JsonElement sp) && sp.GetBoolean() ? 3 : 4; // control / user-defined
                }
            }
        }

        for (int i = 0; i < tokens.Length; i++)
        {
            if (tokens[i] is null)
            {
                tokens[i] = $"[PAD{i}]";
                types[i] = 5; // unused
            }
        }

        var merges = new List<string>();
        foreach (JsonElement m in model.GetProperty("merges").EnumerateArray())
        {
            merges.Add(m.ValueKind == JsonValueKind.Array ? $"{m[0].GetString()} {m[1].GetString()}" : m.GetString()!);
        }

        g.Add("tokenizer.ggml.model", "gpt2");
        g.Add("tokenizer.ggml.pre", "llama-bpe");
        g.Add("tokenizer.ggml.tokens", tokens);
        g.Add("tokenizer.ggml.token_type", types);
        g.Add("tokenizer.ggml.merges", merges);
        if (c.BosTokenId is int bos)
        {
            g.Add("tokenizer.ggml.bos_token_id", (uint)bos);
        }

        if (c.EosTokenIds.Count > 0)
        {
            g.Add("tokenizer.ggml.eos_token_id", (uint)c.EosTokenIds[^1]);
        }
    }
}
