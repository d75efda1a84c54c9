using System.Globalization;
using System.Text.Json.Nodes;
using LocalMxfp4.Models.Configuration;
using LocalMxfp4.Models.Quantized;
using LocalMxfp4.Numerics.Mxfp4;

namespace LocalMxfp4.Cli.Bench;

/// <summary>A real LLaMA-3 family shape for benchmarks.</summary>
/// <param name="Name">What users call it.</param>
/// <param name="Hidden">Residual width.</param>
/// <param name="Intermediate">MLP width.</param>
/// <param name="Layers">Decoder layers.</param>
/// <param name="Heads">Query heads.</param>
/// <param name="KeyValueHeads">Key/value heads.</param>
/// <param name="HeadDim">Width of a head.</param>
/// <param name="Tied">Whether the lm_head is the embedding.</param>
internal sealed record ModelShape(string Name, int Hidden, int Intermediate, int Layers, int Heads, int KeyValueHeads, int HeadDim, bool Tied)
{
    public static readonly ModelShape Llama32_1B = new("llama-3.2-1b", 2048, 8192, 16, 32, 8, 64, Tied: true);
    public static readonly ModelShape Llama3_8B = new("llama-3-8b", 4096, 14336, 32, 32, 8, 128, Tied: false);

    public static ModelShape Parse(string name) => name.ToLowerInvariant() switch
    {
        "1b" or "llama-3.2-1b" => Llama32_1B,
        "8b" or "llama-3-8b" => Llama3_8B,
        _ => throw new ArgumentException($"Unknown shape '{name}'; use 1b (LLaMA-3.2-1B) or 8b (LLaMA-3-8B).", "--shape"),
    };
}

/// <summary>
/// Writes a model of a real LLaMA-3 shape that no one has to download: Gaussian weights (σ = 0.02) rounded to MXFP4
/// (the RTN method, Even scale rule), BF16 embeddings, unit norms, LLaMA-3's config (rope_theta 500000, llama3 RoPE
/// scaling) and the real LLaMA-3 tokenizer files copied from <c>tokenizerDirectory</c>. Its replies are noise; its
/// speed is a real model's, which is what the serving and peer benchmarks measure.
/// </summary>
internal static class SyntheticMxfp4Model
{
    public static void Write(ModelShape shape, string tokenizerDirectory, string output, int seed, bool overwrite)
    {
        if (!File.Exists(Path.Combine(tokenizerDirectory, "tokenizer.json")))
        {
            throw new FileNotFoundException($"{tokenizerDirectory}: no tokenizer.json (give the LLaMA-3 tokenizer directory with --tokenizer).", Path.Combine(tokenizerDirectory, "tokenizer.json"));
        }

        string source = Directory.CreateTempSubdirectory("lmx-synth-").FullName;
        try
        {
            foreach (string name in new[] { "tokenizer.json", "tokenizer_config.json" })
            {
                if (File.Exists(Path.Combine(tokenizerDirectory, name)))
                {
                    File.Copy(Path.Combine(tokenizerDirectory, name), Path.Combine(source, name));
                }
            }

            File.WriteAllText(Path.Combine(source, "config.json"), Config(shape).ToJsonString());
            File.WriteAllText(Path.Combine(source, "generation_config.json"), """{"bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "do_sample": true, "temperature": 0.6, "top_p": 0.9}""");
            LlamaConfig config = LlamaConfig.Load(source);
            QuantizedModelWriter.Write(Build(config, shape, seed), source, output, overwrite);
        }
        finally
        {
            Directory.Delete(source, recursive: true);
        }
    }

    private static JsonObject Config(ModelShape s) => new()
    {
        ["architectures"] = new JsonArray("LlamaForCausalLM"),
        ["model_type"] = "llama",
        ["hidden_size"] = s.Hidden,
        ["intermediate_size"] = s.Intermediate,
        ["num_hidden_layers"] = s.Layers,
        ["num_attention_heads"] = s.Heads,
        ["num_key_value_heads"] = s.KeyValueHeads,
        ["head_dim"] = s.HeadDim,
        ["vocab_size"] = 128256,
        ["max_position_embeddings"] = 131072,
        ["rms_norm_eps"] = 1e-5,
        ["rope_theta"] = 500000.0,
        ["rope_scaling"] = new JsonObject { ["rope_type"] = "llama3", ["factor"] = 32.0, ["low_freq_factor"] = 1.0, ["high_freq_factor"] = 4.0, ["original_max_position_embeddings"] = 8192 },
        ["tie_word_embeddings"] = s.Tied,
        ["bos_token_id"] = 128000,
        ["eos_token_id"] = new JsonArray(128001, 128008, 128009),
        ["torch_dtype"] = "bfloat16",
        ["synthetic"] = string.Create(CultureInfo.InvariantCulture, $"{s.Name} shape, Gaussian weights (sigma 0.02), RTN MXFP4; written by lmx bench synth"),
    };

    private static QuantizedModel Build(LlamaConfig c, ModelShape shape, int seed)
    {
        int hidden = c.HiddenSize, inner = c.IntermediateSize;
        var layers = new QuantizedLayer[c.LayerCount];
        int tensor = 0;
        Mxfp4Matrix M(int rows, int columns) => Matrix(rows, columns, seed, tensor++);
        for (int l = 0; l < c.LayerCount; l++)
        {
            Console.Error.Write($"\rsynthesizing layer {l + 1}/{c.LayerCount}");
            layers[l] = new QuantizedLayer(
                Ones(hidden), M(c.QueryWidth, hidden), M(c.KeyValueWidth, hidden), M(c.KeyValueWidth, hidden), M(hidden, c.QueryWidth),
                Ones(hidden), M(inner, hidden), M(inner, hidden), M(hidden, inner),
                null, null, null, null);
        }

        Console.Error.WriteLine();
        float[] embedding = Gaussian(c.VocabularySize, hidden, seed, tensor++);
        float[]? head = shape.Tied ? null : Gaussian(c.VocabularySize, hidden, seed, tensor++);
        var quantization = new QuantizationConfig
        {
            Method = TransformMethod.Rtn,
            ActivationScaleRule = ScaleRule.Even,
            WeightScales = WeightScaleMode.SameAsActivations,
            Seed = seed,
            ToolVersion = "lmx bench synth",
        };
        return new QuantizedModel(c, quantization, embedding, layers, Ones(hidden), head);
    }

    private static float[] Ones(int n) => Enumerable.Repeat(1f, n).ToArray();

    private static Mxfp4Matrix Matrix(int rows, int columns, int seed, int tensor)
    {
        int blocks = Mxfp4Codec.BlockCount(columns);
        var packed = new byte[(long)rows * blocks * 16];
        var scales = new byte[(long)rows * blocks];
        Parallel.For(0, rows, () => new float[columns], (r, _, row) =>
        {
            FillGaussian(row, Seed(seed, tensor, r));
            Mxfp4Codec.QuantizeRow(row, packed.AsSpan(r * blocks * 16, blocks * 16), scales.AsSpan(r * blocks, blocks), ScaleRule.Even);
            return row;
        }, _ => { });
        return new Mxfp4Matrix(rows, columns, packed, scales);
    }

    private static float[] Gaussian(int rows, int columns, int seed, int tensor)
    {
        var values = new float[(long)rows * columns];
        Parallel.For(0, rows, r => FillGaussian(values.AsSpan(r * columns, columns), Seed(seed, tensor, r)));
        return values;
    }

    /// <summary>A row's own seed, fixed by (seed, tensor, row), so rows can be generated in any order on any thread.</summary>
    private static int Seed(int seed, int tensor, int row)
    {
        ulong z = ((ulong)(uint)seed << 40) ^ ((ulong)(uint)tensor << 24) ^ (uint)row;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return (int)(z ^ (z >> 31));
    }

    private static void FillGaussian(Span<float> destination, int seed)
    {
        var rng = new Random(seed);
        for (int i = 0; i < destination.Length; i += 2)
        {
            // Box–Muller: two normal values per pair of uniforms.
            double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
            double radius = Math.Sqrt(-2.0 * Math.Log(u1)) * 0.02;
            destination[i] = (float)(radius * Math.Cos(2 * Math.PI * u2));
            if (i + 1 < destination.Length)
            {
                destination[i + 1] = (float)(radius * Math.Sin(2 * Math.PI * u2));
            }
        }
    }
}
