using System.Text.Json;

namespace LocalMxfp4.Models.Configuration;

/// <summary>
/// The architecture of a LLaMA-family checkpoint, read from Hugging Face's <c>config.json</c> (and
/// <c>generation_config.json</c> when present). Only what the forward pass and generation need is kept, and every
/// value is checked against the others so a bad file fails at load with the field named, not deep in a matmul.
/// </summary>
public sealed record LlamaConfig
{
    /// <summary>Width of the residual stream.</summary>
    public required int HiddenSize { get; init; }

    /// <summary>Width of the SwiGLU MLP.</summary>
    public required int IntermediateSize { get; init; }

    /// <summary>Number of decoder layers.</summary>
    public required int LayerCount { get; init; }

    /// <summary>Query heads.</summary>
    public required int HeadCount { get; init; }

    /// <summary>Key/value heads (grouped-query attention when fewer than <see cref="HeadCount"/>).</summary>
    public required int KeyValueHeadCount { get; init; }

    /// <summary>Per-head width.</summary>
    public required int HeadDim { get; init; }

    /// <summary>Vocabulary size (rows of the embedding and the lm_head).</summary>
    public required int VocabularySize { get; init; }

    /// <summary>Longest context the model supports.</summary>
    public required int MaxPositions { get; init; }

    /// <summary>RMSNorm epsilon.</summary>
    public required double RmsNormEpsilon { get; init; }

    /// <summary>RoPE base.</summary>
    public required double RopeTheta { get; init; }

    /// <summary>LLaMA-3.1 frequency scaling, or null for plain RoPE.</summary>
    public RopeScaling? RopeScaling { get; init; }

    /// <summary>True when the lm_head reuses the embedding matrix.</summary>
    public required bool TieWordEmbeddings { get; init; }

    /// <summary>Beginning-of-sequence id, when the config names one.</summary>
    public int? BosTokenId { get; init; }

    /// <summary>End-of-sequence ids: config.json's, extended by generation_config.json's.</summary>
    public IReadOnlyList<int> EosTokenIds { get; init; } = [];

    /// <summary>Sampling defaults from generation_config.json, when present.</summary>
    public GenerationDefaults Generation { get; init; } = new();

    /// <summary><c>model_type</c> as written.</summary>
    public string ModelType { get; init; } = "llama";

    /// <summary><c>torch_dtype</c> as written (informational).</summary>
    public string? TorchDType { get; init; }

    /// <summary>The raw <c>quantization_config</c> object, for loaders of quantized models.</summary>
    public JsonElement? QuantizationConfig { get; init; }

    /// <summary>Width of all query heads together.</summary>
    public int QueryWidth => HeadCount * HeadDim;

    /// <summary>Width of all key (or value) heads together.</summary>
    public int KeyValueWidth => KeyValueHeadCount * HeadDim;

    /// <summary>Reads <c>config.json</c> and, if present, <c>generation_config.json</c> from a model directory.</summary>
    public static LlamaConfig Load(string modelDirectory)
    {
        string configPath = Path.Combine(modelDirectory, "config.json");
        if (!File.Exists(configPath))
        {
            throw new ModelConfigException(configPath, null, "file not found; a Hugging Face model directory has a config.json.");
        }

        LlamaConfig config = Parse(File.ReadAllText(configPath), configPath);
        string generationPath = Path.Combine(modelDirectory, "generation_config.json");
        if (File.Exists(generationPath))
        {
            config = config.WithGenerationConfig(File.ReadAllText(generationPath), generationPath);
        }

        return config;
    }

    /// <summary>Parses the text of a <c>config.json</c>; <paramref name="filePath"/> only names it in errors.</summary>
    public static LlamaConfig Parse(string json, string filePath = "config.json")
    {
        using JsonDocument doc = ParseDocument(json, filePath);
        var r = new JsonFields(doc.RootElement, filePath);

        string modelType = r.OptionalString("model_type") ?? "llama";
        if (modelType is not ("llama" or "mistral"))
        {
            throw new ModelConfigException(filePath, "model_type", $"'{modelType}' is not a LLaMA-family architecture.");
        }

        string activation = r.OptionalString("hidden_act") ?? "silu";
        if (activation != "silu")
        {
            throw new ModelConfigException(filePath, "hidden_act", $"'{activation}' is not supported; LLaMA uses 'silu'.");
        }

        foreach (string biasField in new[] { "attention_bias", "mlp_bias" })
        {
            if (r.OptionalBool(biasField) == true)
            {
                throw new ModelConfigException(filePath, biasField, "biases in linear layers are not supported (LLaMA has none).");
            }
        }

        int hidden = r.RequiredPositiveInt("hidden_size");
        int heads = r.RequiredPositiveInt("num_attention_heads");
        int kvHeads = r.OptionalPositiveInt("num_key_value_heads") ?? heads;
        if (heads % kvHeads != 0)
        {
            throw new ModelConfigException(filePath, "num_key_value_heads", $"{kvHeads} does not divide num_attention_heads = {heads}.");
        }

        int? headDimField = r.OptionalPositiveInt("head_dim");
        if (headDimField is null && hidden % heads != 0)
        {
            throw new ModelConfigException(filePath, "num_attention_heads", $"{heads} does not divide hidden_size = {hidden} and no head_dim is given.");
        }

        int headDim = headDimField ?? hidden / heads;
        if (headDim % 2 != 0)
        {
            throw new ModelConfigException(filePath, "head_dim", $"{headDim} is odd; rotary embeddings rotate pairs.");
        }

        double eps = r.OptionalDouble("rms_norm_eps") ?? 1e-6;
        if (!(eps > 0))
        {
            throw new ModelConfigException(filePath, "rms_norm_eps", $"{eps} must be positive.");
        }

        double theta = r.OptionalDouble("rope_theta") ?? 10000.0;
        if (!(theta > 1))
        {
            throw new ModelConfigException(filePath, "rope_theta", $"{theta} must be greater than 1.");
        }

        int maxPositions = r.RequiredPositiveInt("max_position_embeddings");
        RopeScaling? scaling = ParseRopeScaling(doc.RootElement, filePath, maxPositions);
        int vocab = r.RequiredPositiveInt("vocab_size");
        int? bos = r.OptionalTokenId("bos_token_id", vocab);
        IReadOnlyList<int> eos = r.OptionalTokenIds("eos_token_id", vocab);

        return new LlamaConfig
        {
            HiddenSize = hidden,
            IntermediateSize = r.RequiredPositiveInt("intermediate_size"),
            LayerCount = r.RequiredPositiveInt("num_hidden_layers"),
            HeadCount = heads,
            KeyValueHeadCount = kvHeads,
            HeadDim = headDim,
            VocabularySize = vocab,
            MaxPositions = maxPositions,
            RmsNormEpsilon = eps,
            RopeTheta = theta,
            RopeScaling = scaling,
            TieWordEmbeddings = r.OptionalBool("tie_word_embeddings") ?? false,
            BosTokenId = bos,
            EosTokenIds = eos,
            ModelType = modelType,
            TorchDType = r.OptionalString("torch_dtype"),
            QuantizationConfig = doc.RootElement.TryGetProperty("quantization_config", out JsonElement q) ? q.Clone() : null,
        };
    }

    /// <summary>Merges a <c>generation_config.json</c>: its eos ids join config.json's, its sampling values become defaults.</summary>
    public LlamaConfig WithGenerationConfig(string json, string filePath = "generation_config.json")
    {
        using JsonDocument doc = ParseDocument(json, filePath);
        var r = new JsonFields(doc.RootElement, filePath);
        int? bos = r.OptionalTokenId("bos_token_id", VocabularySize);
        IReadOnlyList<int> eos = r.OptionalTokenIds("eos_token_id", VocabularySize);
        if (bos is not null && BosTokenId is not null && bos != BosTokenId)
        {
            throw new ModelConfigException(filePath, "bos_token_id", $"{bos} contradicts config.json's bos_token_id {BosTokenId}.");
        }

        return this with
        {
            BosTokenId = BosTokenId ?? bos,
            EosTokenIds = EosTokenIds.Concat(eos).Distinct().ToArray(),
            Generation = new GenerationDefaults
            {
                Temperature = r.OptionalDouble("temperature"),
                TopP = r.OptionalDouble("top_p"),
                TopK = r.OptionalPositiveInt("top_k"),
                DoSample = r.OptionalBool("do_sample"),
                RepetitionPenalty = r.OptionalDouble("repetition_penalty"),
                MaxLength = r.OptionalPositiveInt("max_length"),
            },
        };
    }

    private static RopeScaling? ParseRopeScaling(JsonElement root, string filePath, int maxPositions)
    {
        if (!root.TryGetProperty("rope_scaling", out JsonElement s) || s.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (s.ValueKind != JsonValueKind.Object)
        {
            throw new ModelConfigException(filePath, "rope_scaling", "must be an object or null.");
        }

        var r = new JsonFields(s, filePath, "rope_scaling.");
        string? type = r.OptionalString("rope_type") ?? r.OptionalString("type");
        if (type == "default")
        {
            return null;
        }

        if (type != "llama3")
        {
            throw new ModelConfigException(filePath, "rope_scaling.rope_type", $"'{type ?? "(missing)"}' is not supported; only 'llama3' scaling is implemented.");
        }

        double factor = r.RequiredDouble("factor");
        double low = r.RequiredDouble("low_freq_factor");
        double high = r.RequiredDouble("high_freq_factor");
        int original = r.RequiredPositiveInt("original_max_position_embeddings");
        if (!(factor >= 1))
        {
            throw new ModelConfigException(filePath, "rope_scaling.factor", $"{factor} must be at least 1.");
        }

        if (!(low > 0 && high > low))
        {
            throw new ModelConfigException(filePath, "rope_scaling.high_freq_factor", $"needs 0 < low_freq_factor ({low}) < high_freq_factor ({high}).");
        }

        if (original > maxPositions)
        {
            throw new ModelConfigException(filePath, "rope_scaling.original_max_position_embeddings", $"{original} exceeds max_position_embeddings = {maxPositions}.");
        }

        return new RopeScaling(factor, low, high, original);
    }

    private static JsonDocument ParseDocument(string json, string filePath)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json, new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
        }
        catch (JsonException e)
        {
            throw new ModelConfigException(filePath, null, $"not valid JSON (line {e.LineNumber + 1}): {e.Message}", e);
        }

        if (doc.RootElement.ValueKind != JsonValueKind.Object)
        {
            doc.Dispose();
            throw new ModelConfigException(filePath, null, "the top level must be a JSON object.");
        }

        return doc;
    }
}

/// <summary>Sampling defaults a model's authors shipped in <c>generation_config.json</c>.</summary>
public sealed record GenerationDefaults
{
    /// <summary>Default temperature.</summary>
    public double? Temperature { get; init; }

    /// <summary>Default nucleus mass.</summary>
    public double? TopP { get; init; }

    /// <summary>Default top-k.</summary>
    public int? TopK { get; init; }

    /// <summary>False means greedy by default.</summary>
    public bool? DoSample { get; init; }

    /// <summary>Default repetition penalty.</summary>
    public double? RepetitionPenalty { get; init; }

    /// <summary>Default total length.</summary>
    public int? MaxLength { get; init; }
}
