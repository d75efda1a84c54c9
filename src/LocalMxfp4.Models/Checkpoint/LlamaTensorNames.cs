namespace LocalMxfp4.Models.Checkpoint;

/// <summary>The Hugging Face <c>LlamaForCausalLM</c> tensor names.</summary>
public static class LlamaTensorNames
{
    /// <summary>Token embeddings <c>[vocab, hidden]</c>.</summary>
    public const string Embedding = "model.embed_tokens.weight";

    /// <summary>The norm before the lm_head.</summary>
    public const string FinalNorm = "model.norm.weight";

    /// <summary>The output projection <c>[vocab, hidden]</c> (absent when tied).</summary>
    public const string LmHead = "lm_head.weight";

    /// <summary>The names of one decoder layer's tensors.</summary>
    public static LayerTensorNames Layer(int index) => new($"model.layers.{index}.");
}

/// <summary>Tensor names of decoder layer <c>model.layers.N.</c>.</summary>
/// <param name="Prefix">For example <c>model.layers.3.</c>.</param>
public readonly record struct LayerTensorNames(string Prefix)
{
    /// <summary>RMSNorm before attention.</summary>
    public string InputNorm => Prefix + "input_layernorm.weight";

    /// <summary>Query projection.</summary>
    public string Query => Prefix + "self_attn.q_proj.weight";

    /// <summary>Key projection.</summary>
    public string Key => Prefix + "self_attn.k_proj.weight";

    /// <summary>Value projection.</summary>
    public string Value => Prefix + "self_attn.v_proj.weight";

    /// <summary>Attention output projection.</summary>
    public string Output => Prefix + "self_attn.o_proj.weight";

    /// <summary>RMSNorm before the MLP.</summary>
    public string PostAttentionNorm => Prefix + "post_attention_layernorm.weight";

    /// <summary>MLP gate projection.</summary>
    public string Gate => Prefix + "mlp.gate_proj.weight";

    /// <summary>MLP up projection.</summary>
    public string Up => Prefix + "mlp.up_proj.weight";

    /// <summary>MLP down projection.</summary>
    public string Down => Prefix + "mlp.down_proj.weight";
}
