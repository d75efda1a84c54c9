namespace LocalMxfp4.Models.Quantized;

/// <summary>
/// Tensor names of a quantized model. Each linear layer <c>X.weight</c> becomes <c>X.weight_blocks</c> (U8
/// <c>[out, in/32, 16]</c>, element 2i in the low nibble of byte i) and <c>X.weight_scales</c> (U8 E8M0
/// <c>[out, in/32]</c>), the gpt-oss / Hugging Face convention. Online transforms are F32 <c>[32, 32]</c> (shared) or
/// <c>[in/32, 32, 32]</c> (per block); a site without a transform tensor has none.
/// </summary>
public static class QuantizedTensorNames
{
    /// <summary>Packed nibbles of a linear layer given its float weight name (<c>….weight</c>).</summary>
    public static string Blocks(string weightName) => weightName + "_blocks";

    /// <summary>E8M0 scales of a linear layer given its float weight name.</summary>
    public static string Scales(string weightName) => weightName + "_scales";

    /// <summary>The q/k/v input transform of layer <paramref name="layer"/>.</summary>
    public static string QkvTransform(int layer) => $"model.layers.{layer}.self_attn.qkv_input_transform";

    /// <summary>The o_proj input transform.</summary>
    public static string OutputTransform(int layer) => $"model.layers.{layer}.self_attn.o_proj.input_transform";

    /// <summary>The gate/up input transform.</summary>
    public static string GateUpTransform(int layer) => $"model.layers.{layer}.mlp.gate_up_input_transform";

    /// <summary>The down_proj input transform.</summary>
    public static string DownTransform(int layer) => $"model.layers.{layer}.mlp.down_proj.input_transform";
}
