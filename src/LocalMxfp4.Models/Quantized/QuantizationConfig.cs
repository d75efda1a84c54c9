using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using LocalMxfp4.Models.Configuration;
using LocalMxfp4.Numerics.Mxfp4;

namespace LocalMxfp4.Models.Quantized;

/// <summary>How the transforms of a quantized model were chosen.</summary>
public enum TransformMethod
{
    /// <summary>No transform, no smoothing: round-to-nearest MXFP4.</summary>
    Rtn,

    /// <summary>The normalised 32×32 Sylvester Hadamard on every block (the BRQ / MR-GPTQ baseline).</summary>
    Hadamard,

    /// <summary>DuQuant++: smoothing plus one greedy outlier-aware 32×32 rotation per linear input.</summary>
    DuQuant,
}

/// <summary>Which index each greedy rotation step targets (see the spec, §3.5.4).</summary>
public enum RotationIndexMode
{
    /// <summary>The released code: the row of the global extreme, modulo 32.</summary>
    RowMod,

    /// <summary>The paper's description: the extreme's channel inside its 32-block.</summary>
    Channel,
}

/// <summary>How weight block scales are chosen.</summary>
public enum WeightScaleMode
{
    /// <summary>The same rule as activations (<see cref="QuantizationConfig.ActivationScaleRule"/>).</summary>
    SameAsActivations,

    /// <summary>Per block, the E8M0 exponent among {rule − 1, rule, rule + 1} with the least squared error.</summary>
    Search,
}

/// <summary>
/// The <c>quantization_config</c> of a LocalMxfp4 model in config.json: everything needed to run it (format, block
/// size, activation scale rule) and to reproduce it (method, seed, steps, calibration source, tool version).
/// </summary>
public sealed record QuantizationConfig
{
    /// <summary>The <c>quant_method</c> value that marks our models (not Hugging Face's gpt-oss "mxfp4" loader).</summary>
    public const string QuantMethod = "localmxfp4";

    /// <summary>Transform method.</summary>
    public TransformMethod Method { get; init; } = TransformMethod.DuQuant;

    /// <summary>Scale rule of the online activation quantization (and of weights unless searched).</summary>
    public ScaleRule ActivationScaleRule { get; init; } = ScaleRule.Floor;

    /// <summary>Weight scale choice.</summary>
    public WeightScaleMode WeightScales { get; init; } = WeightScaleMode.SameAsActivations;

    /// <summary>SmoothQuant α (0 = no smoothing).</summary>
    public double SmoothingAlpha { get; init; }

    /// <summary>Greedy rotation steps.</summary>
    public int RotationSteps { get; init; }

    /// <summary>Greedy rotation index mode.</summary>
    public RotationIndexMode RotationIndex { get; init; } = RotationIndexMode.RowMod;

    /// <summary>Seed of every random choice.</summary>
    public int Seed { get; init; }

    /// <summary>GPTQ was applied ("DuQuant++*").</summary>
    public bool Gptq { get; init; }

    /// <summary>Calibration text file name (not its path: the model may move).</summary>
    public string? CalibrationSource { get; init; }

    /// <summary>Calibration windows.</summary>
    public int CalibrationSamples { get; init; }

    /// <summary>Calibration window length.</summary>
    public int CalibrationSequenceLength { get; init; }

    /// <summary>The tool and version that wrote the model.</summary>
    public string ToolVersion { get; init; } = "";

    /// <summary>Elements per scale block (always 32).</summary>
    public int BlockSize => Mxfp4Codec.BlockSize;

    /// <summary>The JSON object written into config.json.</summary>
    public JsonObject ToJson() => new()
    {
        ["quant_method"] = QuantMethod,
        ["format"] = "mxfp4",
        ["bits"] = 4,
        ["block_size"] = BlockSize,
        ["weights"] = "mxfp4",
        ["activations"] = "mxfp4",
        ["kv_cache"] = "float",
        ["method"] = Name(Method),
        ["activation_scale_rule"] = Name(ActivationScaleRule),
        ["weight_scales"] = WeightScales == WeightScaleMode.Search ? "search" : "rule",
        ["smoothing_alpha"] = SmoothingAlpha,
        ["rotation_steps"] = RotationSteps,
        ["rotation_index"] = RotationIndex == RotationIndexMode.RowMod ? "row_mod" : "channel",
        ["seed"] = Seed,
        ["gptq"] = Gptq,
        ["calibration"] = new JsonObject
        {
            ["source"] = CalibrationSource,
            ["samples"] = CalibrationSamples,
            ["sequence_length"] = CalibrationSequenceLength,
        },
        ["tool"] = ToolVersion,
    };

    /// <summary>Reads the object written by <see cref="ToJson"/>; <paramref name="filePath"/> names config.json in errors.</summary>
    public static QuantizationConfig Parse(JsonElement e, string filePath)
    {
        if (e.ValueKind != JsonValueKind.Object)
        {
            throw new ModelConfigException(filePath, "quantization_config", "must be an object.");
        }

        string method = Required(e, "quant_method", filePath);
        if (method != QuantMethod)
        {
            throw new ModelConfigException(filePath, "quantization_config.quant_method", $"'{method}' is not a LocalMxfp4 model (expected '{QuantMethod}').");
        }

        if (Required(e, "format", filePath) != "mxfp4")
        {
            throw new ModelConfigException(filePath, "quantization_config.format", "only 'mxfp4' is supported.");
        }

        if (e.TryGetProperty("block_size", out JsonElement bs) && (!bs.TryGetInt32(out int blockSize) || blockSize != 32))
        {
            throw new ModelConfigException(filePath, "quantization_config.block_size", $"must be 32 (MXFP4), got {bs.GetRawText()}.");
        }

        return new QuantizationConfig
        {
            Method = Required(e, "method", filePath) switch
            {
                "rtn" => TransformMethod.Rtn,
                "hadamard" => TransformMethod.Hadamard,
                "duquant" => TransformMethod.DuQuant,
                string other => throw new ModelConfigException(filePath, "quantization_config.method", $"'{other}' is not rtn, hadamard or duquant."),
            },
            ActivationScaleRule = ParseRule(Required(e, "activation_scale_rule", filePath), filePath),
            WeightScales = Optional(e, "weight_scales") == "search" ? WeightScaleMode.Search : WeightScaleMode.SameAsActivations,
            SmoothingAlpha = e.TryGetProperty("smoothing_alpha", out JsonElement a) && a.TryGetDouble(out double alpha) ? alpha : 0,
            RotationSteps = e.TryGetProperty("rotation_steps", out JsonElement s) && s.TryGetInt32(out int steps) ? steps : 0,
            RotationIndex = Optional(e, "rotation_index") == "channel" ? RotationIndexMode.Channel : RotationIndexMode.RowMod,
            Seed = e.TryGetProperty("seed", out JsonElement sd) && sd.TryGetInt32(out int seed) ? seed : 0,
            Gptq = e.TryGetProperty("gptq", out JsonElement g) && g.ValueKind == JsonValueKind.True,
            CalibrationSource = e.TryGetProperty("calibration", out JsonElement c) && c.ValueKind == JsonValueKind.Object ? Optional(c, "source") : null,
            CalibrationSamples = c.ValueKind == JsonValueKind.Object && c.TryGetProperty("samples", out JsonElement n) && n.TryGetInt32(out int samples) ? samples : 0,
            CalibrationSequenceLength = c.ValueKind == JsonValueKind.Object && c.TryGetProperty("sequence_length", out JsonElement l) && l.TryGetInt32(out int len) ? len : 0,
            ToolVersion = Optional(e, "tool") ?? "",
        };
    }

    /// <summary>Lower-case name of a scale rule, as written to disk and accepted on the command line.</summary>
    public static string Name(ScaleRule rule) => rule.ToString().ToLowerInvariant();

    /// <summary>Lower-case name of a method.</summary>
    public static string Name(TransformMethod method) => method.ToString().ToLowerInvariant();

    /// <summary>Parses "floor", "even" or "roundup".</summary>
    public static ScaleRule ParseRule(string value, string filePath) => value switch
    {
        "floor" => ScaleRule.Floor,
        "even" => ScaleRule.Even,
        "roundup" => ScaleRule.RoundUp,
        _ => throw new ModelConfigException(filePath, "quantization_config.activation_scale_rule", $"'{value}' is not floor, even or roundup."),
    };

    /// <summary>A one-line description.</summary>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"{Name(Method)}{(Gptq ? "+gptq" : "")}, scale rule {Name(ActivationScaleRule)}{(WeightScales == WeightScaleMode.Search ? " (weights searched)" : "")}, α {SmoothingAlpha}, {RotationSteps} steps, seed {Seed}");

    private static string Required(JsonElement e, string name, string filePath) =>
        Optional(e, name) ?? throw new ModelConfigException(filePath, "quantization_config." + name, "is required.");

    private static string? Optional(JsonElement e, string name) =>
        e.TryGetProperty(name, out JsonElement v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
}
