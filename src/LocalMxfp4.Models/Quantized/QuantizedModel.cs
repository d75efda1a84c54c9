using LocalMxfp4.Models.Configuration;
using LocalMxfp4.Numerics.Mxfp4;

namespace LocalMxfp4.Models.Quantized;

/// <summary>
/// The online transform of one linear input: either one row-major 32×32 matrix shared by every block, or one per
/// block (<c>[blocks, 32, 32]</c>), applied as <c>x_b ← x_b · M_b</c> before MXFP4 quantization.
/// </summary>
/// <param name="Matrices">The float32 matrices.</param>
/// <param name="Blocks">Blocks of the input covered.</param>
public sealed record InputTransform(float[] Matrices, int Blocks)
{
    /// <summary>True when one matrix serves every block.</summary>
    public bool IsShared => Matrices.Length == 32 * 32;
}

/// <summary>One decoder layer of a quantized model.</summary>
/// <param name="AttentionNorm">Input RMSNorm gain (smoothing folded in).</param>
/// <param name="Query">q_proj weights (transform folded in).</param>
/// <param name="Key">k_proj weights.</param>
/// <param name="Value">v_proj weights.</param>
/// <param name="Output">o_proj weights.</param>
/// <param name="MlpNorm">Post-attention RMSNorm gain.</param>
/// <param name="Gate">gate_proj weights.</param>
/// <param name="Up">up_proj weights.</param>
/// <param name="Down">down_proj weights.</param>
/// <param name="QkvTransform">Online transform of the q/k/v input, or null.</param>
/// <param name="OutputTransform">Online transform of the o_proj input, or null.</param>
/// <param name="GateUpTransform">Online transform of the gate/up input, or null.</param>
/// <param name="DownTransform">Online transform of the down_proj input, or null.</param>
public sealed record QuantizedLayer(
    float[] AttentionNorm,
    Mxfp4Matrix Query,
    Mxfp4Matrix Key,
    Mxfp4Matrix Value,
    Mxfp4Matrix Output,
    float[] MlpNorm,
    Mxfp4Matrix Gate,
    Mxfp4Matrix Up,
    Mxfp4Matrix Down,
    InputTransform? QkvTransform,
    InputTransform? OutputTransform,
    InputTransform? GateUpTransform,
    InputTransform? DownTransform);

/// <summary>A whole W4A4 model as stored: the data every backend builds its layers from.</summary>
/// <param name="Config">The architecture.</param>
/// <param name="Quantization">How it was quantized and how activations must be quantized.</param>
/// <param name="Embedding">Token embeddings <c>[vocab, hidden]</c> (stored as BF16).</param>
/// <param name="Layers">Decoder layers.</param>
/// <param name="FinalNorm">The norm before the lm_head.</param>
/// <param name="LmHead">lm_head <c>[vocab, hidden]</c> (stored as BF16), or null when tied to the embedding.</param>
public sealed record QuantizedModel(
    LlamaConfig Config,
    QuantizationConfig Quantization,
    float[] Embedding,
    IReadOnlyList<QuantizedLayer> Layers,
    float[] FinalNorm,
    float[]? LmHead);
