using System.Text.Json;
using System.Text.Json.Nodes;
using LocalMxfp4.Numerics;
using LocalMxfp4.Safetensors;
using LocalMxfp4.TestSupport;

namespace LocalMxfp4.Testing;

/// <summary>Shape and options of a generated LLaMA-3-style checkpoint.</summary>
public sealed record SyntheticLlamaSpec
{
    /// <summary>Residual width.</summary>
    public int Hidden { get; init; } = 64;

    /// <summary>MLP width.</summary>
    public int Intermediate { get; init; } = 160;

    /// <summary>Decoder layers.</summary>
    public int Layers { get; init; } = 2;

    /// <summary>Query heads.</summary>
    public int Heads { get; init; } = 4;

    /// <summary>Key/value heads.</summary>
    public int KeyValueHeads { get; init; } = 2;

    /// <summary>Vocabulary (LLaMA-3's by default).</summary>
    public int Vocabulary { get; init; } = 128256;

    /// <summary>Max positions.</summary>
    public int MaxPositions { get; init; } = 256;

    /// <summary>Write BF16 (else F32).</summary>
    public bool BFloat16 { get; init; } = true;

    /// <summary>Split into two shards with an index.</summary>
    public bool Sharded { get; init; } = true;

    /// <summary>Tie the lm_head to the embedding.</summary>
    public bool Tied { get; init; }

    /// <summary>Weight seed.</summary>
    public int Seed { get; init; } = 1234;

    /// <summary>Copy the real LLaMA-3 tokenizer files from shared/ (tokenizer.json + tokenizer_config.json).</summary>
    public bool WithLlama3Tokenizer { get; init; } = true;
}

/// <summary>
/// Writes a small random LLaMA-3-shaped Hugging Face checkpoint — config.json with <c>rope_scaling</c> llama3,
/// generation_config.json, BF16 safetensors split over two shards plus <c>model.safetensors.index.json</c>, and the
/// real LLaMA-3 tokenizer — so every loading path of a real checkpoint runs without a real checkpoint.
/// </summary>
public static class SyntheticLlamaCheckpoint
{
    /// <summary>Creates the checkpoint in a new temporary directory and returns its path.</summary>
    public static string Create(SyntheticLlamaSpec spec)
    {
        string dir = Path.Combine(Path.GetTempPath(), "lmx-fixture-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(dir);
        WriteConfig(dir, spec);
        WriteWeights(dir, spec);
        if (spec.WithLlama3Tokenizer)
        {
            foreach (string f in new[] { "tokenizer.json", "tokenizer_config.json" })
            {
                File.Copy(SharedData.Path("tokenizers", "llama3", f), Path.Combine(dir, f));
            }
        }

        return dir;
    }

    /// <summary>The tensors of a random model, float32 values in HF names and shapes.</summary>
    public static IEnumerable<(string Name, long[] Shape, float[] Values)> Tensors(SyntheticLlamaSpec spec)
    {
        var rng = new Random(spec.Seed);
        int headDim = spec.Hidden / spec.Heads;
        int q = spec.Heads * headDim, kv = spec.KeyValueHeads * headDim;
        // Scaled like a trained model's init so activations stay O(1) through the layers.
        yield return ("model.embed_tokens.weight", [spec.Vocabulary, spec.Hidden], Random(rng, spec.Vocabulary * spec.Hidden, 1.0));
        for (int l = 0; l < spec.Layers; l++)
        {
            string p = $"model.layers.{l}.";
            yield return (p + "input_layernorm.weight", [spec.Hidden], Norm(rng, spec.Hidden));
            yield return (p + "self_attn.q_proj.weight", [q, spec.Hidden], Random(rng, q * spec.Hidden, 1 / Math.Sqrt(spec.Hidden)));
            yield return (p + "self_attn.k_proj.weight", [kv, spec.Hidden], Random(rng, kv * spec.Hidden, 1 / Math.Sqrt(spec.Hidden)));
            yield return (p + "self_attn.v_proj.weight", [kv, spec.Hidden], Random(rng, kv * spec.Hidden, 1 / Math.Sqrt(spec.Hidden)));
            yield return (p + "self_attn.o_proj.weight", [spec.Hidden, q], Random(rng, spec.Hidden * q, 1 / Math.Sqrt(q)));
            yield return (p + "post_attention_layernorm.weight", [spec.Hidden], Norm(rng, spec.Hidden));
            yield return (p + "mlp.gate_proj.weight", [spec.Intermediate, spec.Hidden], Random(rng, spec.Intermediate * spec.Hidden, 1 / Math.Sqrt(spec.Hidden)));
            yield return (p + "mlp.up_proj.weight", [spec.Intermediate, spec.Hidden], Random(rng, spec.Intermediate * spec.Hidden, 1 / Math.Sqrt(spec.Hidden)));
            yield return (p + "mlp.down_proj.weight", [spec.Hidden, spec.Intermediate], Random(rng, spec.Hidden * spec.Intermediate, 1 / Math.Sqrt(spec.Intermediate)));
        }

        yield return ("model.norm.weight", [spec.Hidden], Norm(rng, spec.Hidden));
        if (!spec.Tied)
        {
            yield return ("lm_head.weight", [spec.Vocabulary, spec.Hidden], Random(rng, spec.Vocabulary * spec.Hidden, 1 / Math.Sqrt(spec.Hidden)));
        }
    }

    private static void WriteConfig(string dir, SyntheticLlamaSpec spec)
    {
        var config = new JsonObject
        {
            ["architectures"] = new JsonArray("LlamaForCausalLM"),
            ["model_type"] = "llama",
            ["hidden_size"] = spec.Hidden,
            ["intermediate_size"] = spec.Intermediate,
            ["num_hidden_layers"] = spec.Layers,
            ["num_attention_heads"] = spec.Heads,
            ["num_key_value_heads"] = spec.KeyValueHeads,
            ["vocab_size"] = spec.Vocabulary,
            ["max_position_embeddings"] = spec.MaxPositions,
            ["rms_norm_eps"] = 1e-5,
            ["rope_theta"] = 500000.0,
            ["rope_scaling"] = new JsonObject
            {
                ["factor"] = 8.0,
                ["low_freq_factor"] = 1.0,
                ["high_freq_factor"] = 4.0,
                ["original_max_position_embeddings"] = Math.Min(64, spec.MaxPositions),
                ["rope_type"] = "llama3",
            },
            ["hidden_act"] = "silu",
            ["tie_word_embeddings"] = spec.Tied,
            ["attention_bias"] = false,
            ["mlp_bias"] = false,
            ["bos_token_id"] = 128000,
            ["eos_token_id"] = new JsonArray(128001, 128008, 128009),
            ["torch_dtype"] = spec.BFloat16 ? "bfloat16" : "float32",
        };
        File.WriteAllText(Path.Combine(dir, "config.json"), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        File.WriteAllText(Path.Combine(dir, "generation_config.json"), """
            { "bos_token_id": 128000, "do_sample": true, "eos_token_id": [128001, 128008, 128009], "temperature": 0.6, "top_p": 0.9 }
            """);
    }

    private static void WriteWeights(string dir, SyntheticLlamaSpec spec)
    {
        var tensors = new List<PendingTensor>();
        foreach ((string name, long[] shape, float[] values) in Tensors(spec))
        {
            byte[] bytes;
            if (spec.BFloat16)
            {
                var bits = new ushort[values.Length];
                BFloat16.FromSingle(values, bits);
                bytes = System.Runtime.InteropServices.MemoryMarshal.AsBytes(bits.AsSpan()).ToArray();
            }
            else
            {
                bytes = System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
            }

            tensors.Add(new PendingTensor(name, spec.BFloat16 ? SafetensorsDType.BF16 : SafetensorsDType.F32, shape, bytes));
        }

        if (spec.Sharded)
        {
            long total = tensors.Sum(t => (long)t.Data.Length);
            // Embedding and layers in one shard, the lm_head in the other, as in real two-shard checkpoints.
            SafetensorsWriter.WriteSharded(dir, tensors, total * 3 / 5, new Dictionary<string, string> { ["format"] = "pt" });
        }
        else
        {
            var writer = new SafetensorsWriter();
            writer.Metadata["format"] = "pt";
            foreach (PendingTensor t in tensors)
            {
                writer.Add(t.Name, t.DType, t.Shape, t.Data);
            }

            writer.Write(Path.Combine(dir, "model.safetensors"));
        }
    }

    private static float[] Random(Random rng, int count, double scale)
    {
        var values = new float[count];
        for (int i = 0; i < count; i++)
        {
            // Sum of uniforms: cheap, bounded, roughly Gaussian with variance 1.
            double g = (rng.NextDouble() + rng.NextDouble() + rng.NextDouble() - 1.5) * 2;
            values[i] = (float)(g * scale);
        }

        return values;
    }

    private static float[] Norm(Random rng, int count)
    {
        var values = new float[count];
        for (int i = 0; i < count; i++)
        {
            values[i] = (float)(0.8 + (0.4 * rng.NextDouble()));
        }

        return values;
    }
}
