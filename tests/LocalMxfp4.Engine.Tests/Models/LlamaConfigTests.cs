using LocalMxfp4.Models.Configuration;
using LocalMxfp4.TestSupport;

namespace LocalMxfp4.Engine.Tests.Models;

public class LlamaConfigTests
{
    private const string Llama31_8B = """
        {
          "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
          "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu",
          "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
          "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
          "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "pretraining_tp": 1,
          "rms_norm_eps": 1e-05,
          "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"},
          "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
          "transformers_version": "4.43.0.dev0", "use_cache": true, "vocab_size": 128256
        }
        """;

    [Fact]
    public void ReadsALlama31Config()
    {
        LlamaConfig c = LlamaConfig.Parse(Llama31_8B);
        Assert.Equal(4096, c.HiddenSize);
        Assert.Equal(14336, c.IntermediateSize);
        Assert.Equal(32, c.LayerCount);
        Assert.Equal(8, c.KeyValueHeadCount);
        Assert.Equal(128, c.HeadDim);
        Assert.Equal(new RopeScaling(8, 1, 4, 8192), c.RopeScaling);
        Assert.Equal([128001, 128008, 128009], c.EosTokenIds);
        Assert.Equal(128000, c.BosTokenId);
        Assert.Equal(1e-5, c.RmsNormEpsilon);
        Assert.False(c.TieWordEmbeddings);
    }

    [Fact]
    public void ReadsStories260KAndItsSingleEosNumber()
    {
        LlamaConfig c = LlamaConfig.Load(SharedData.Path("models", "stories260K"));
        Assert.Equal(64, c.HiddenSize);
        Assert.Equal(8, c.HeadDim);
        Assert.Equal(4, c.KeyValueHeadCount);
        Assert.True(c.TieWordEmbeddings);
        Assert.Equal([2], c.EosTokenIds);
        Assert.Null(c.RopeScaling);
    }

    [Fact]
    public void GenerationConfigAddsEosIdsAndDefaults()
    {
        LlamaConfig c = LlamaConfig.Parse(Llama31_8B.Replace("\"eos_token_id\": [128001, 128008, 128009]", "\"eos_token_id\": 128001"))
            .WithGenerationConfig("""{"bos_token_id": 128000, "do_sample": true, "eos_token_id": [128001, 128009], "temperature": 0.6, "top_p": 0.9}""");
        Assert.Equal([128001, 128009], c.EosTokenIds);
        Assert.Equal(0.6, c.Generation.Temperature);
        Assert.Equal(0.9, c.Generation.TopP);
        Assert.True(c.Generation.DoSample);
    }

    [Theory]
    [InlineData("\"hidden_size\": 4096,", "", "hidden_size", "is required")]
    [InlineData("\"num_key_value_heads\": 8", "\"num_key_value_heads\": 5", "num_key_value_heads", "does not divide")]
    [InlineData("\"hidden_size\": 4096", "\"hidden_size\": \"big\"", "hidden_size", "must be an integer")]
    [InlineData("\"hidden_size\": 4096", "\"hidden_size\": -4096", "hidden_size", "must be positive")]
    [InlineData("\"rope_type\": \"llama3\"", "\"rope_type\": \"yarn\"", "rope_scaling.rope_type", "'yarn' is not supported")]
    [InlineData("\"low_freq_factor\": 1.0", "\"low_freq_factor\": 5.0", "rope_scaling.high_freq_factor", "low_freq_factor")]
    [InlineData("\"factor\": 8.0, ", "", "rope_scaling.factor", "is required")]
    [InlineData("\"eos_token_id\": [128001, 128008, 128009]", "\"eos_token_id\": [128001, 999999]", "eos_token_id", "outside the vocabulary")]
    [InlineData("\"eos_token_id\": [128001, 128008, 128009]", "\"eos_token_id\": \"</s>\"", "eos_token_id", "token id")]
    [InlineData("\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\"", "hidden_act", "not supported")]
    [InlineData("\"attention_bias\": false", "\"attention_bias\": true", "attention_bias", "not supported")]
    [InlineData("\"model_type\": \"llama\"", "\"model_type\": \"gpt2\"", "model_type", "not a LLaMA-family")]
    [InlineData("\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": 0", "rms_norm_eps", "positive")]
    [InlineData("\"original_max_position_embeddings\": 8192", "\"original_max_position_embeddings\": 262144", "rope_scaling.original_max_position_embeddings", "exceeds")]
    public void BadFieldsAreNamed(string find, string replace, string field, string message)
    {
        Assert.Contains(find, Llama31_8B);
        var e = Assert.Throws<ModelConfigException>(() => LlamaConfig.Parse(Llama31_8B.Replace(find, replace), "/models/x/config.json"));
        Assert.Equal(field, e.Field);
        Assert.Equal("/models/x/config.json", e.FilePath);
        Assert.Contains(message, e.Message);
        Assert.Contains(field, e.Message);
        Assert.StartsWith("/models/x/config.json", e.Message);
    }

    [Fact]
    public void HeadDimMustBeDerivableWhenAbsent()
    {
        string json = """{"hidden_size": 100, "intermediate_size": 10, "num_hidden_layers": 1, "num_attention_heads": 3, "vocab_size": 10, "max_position_embeddings": 8}""";
        var e = Assert.Throws<ModelConfigException>(() => LlamaConfig.Parse(json));
        Assert.Equal("num_attention_heads", e.Field);
        LlamaConfig ok = LlamaConfig.Parse(json.Replace("\"vocab_size\"", "\"head_dim\": 32, \"vocab_size\""));
        Assert.Equal(32, ok.HeadDim);
        Assert.Equal(3, ok.KeyValueHeadCount);
    }

    [Fact]
    public void ContradictoryBosBetweenFilesIsAnError()
    {
        LlamaConfig c = LlamaConfig.Parse(Llama31_8B);
        var e = Assert.Throws<ModelConfigException>(() => c.WithGenerationConfig("""{"bos_token_id": 1}""", "gen.json"));
        Assert.Equal("bos_token_id", e.Field);
        Assert.Equal("gen.json", e.FilePath);
    }

    [Theory]
    [InlineData("{ not json", "not valid JSON")]
    [InlineData("[1, 2]", "must be a JSON object")]
    public void MalformedJsonIsNamed(string json, string message)
    {
        var e = Assert.Throws<ModelConfigException>(() => LlamaConfig.Parse(json, "cfg.json"));
        Assert.Contains(message, e.Message);
        Assert.Equal("cfg.json", e.FilePath);
    }

    [Fact]
    public void MissingConfigFileIsNamed()
    {
        string dir = Directory.CreateTempSubdirectory("lmx-noconfig").FullName;
        try
        {
            var e = Assert.Throws<ModelConfigException>(() => LlamaConfig.Load(dir));
            Assert.Equal(Path.Combine(dir, "config.json"), e.FilePath);
            Assert.Contains("file not found", e.Message);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
