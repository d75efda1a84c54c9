using System.CommandLine;
using System.Globalization;
using LocalMxfp4.Models.Checkpoint;
using LocalMxfp4.Models.Configuration;
using LocalMxfp4.Safetensors;
using LocalMxfp4.Tokenization;

namespace LocalMxfp4.Cli;

/// <summary><c>lmx info</c>: what a model directory holds, without running it.</summary>
internal static class InfoCommand
{
    public static Command Create()
    {
        var model = new Option<string?>("--model") { Description = "Model directory (or a .safetensors file in one). Default: the bundled stories260K." };
        var command = new Command("info", "Show a model's configuration, tokenizer and tensor inventory.") { model };
        command.SetAction(parse => Run(parse.GetValue(model)));
        return command;
    }

    private static int Run(string? modelPath)
    {
        ModelDirectory dir = ModelDirectory.Resolve(DefaultModel.Resolve(modelPath));
        LlamaConfig c = dir.LoadConfig();
        var inv = CultureInfo.InvariantCulture;
        Console.WriteLine($"model        {dir.Directory}");
        Console.WriteLine($"architecture {c.ModelType}: {c.LayerCount} layers, hidden {c.HiddenSize}, MLP {c.IntermediateSize}, heads {c.HeadCount}/{c.KeyValueHeadCount} (head_dim {c.HeadDim}), vocab {c.VocabularySize}");
        Console.WriteLine(string.Create(inv, $"position     max {c.MaxPositions}, rope_theta {c.RopeTheta}, rms_norm_eps {c.RmsNormEpsilon}"));
        if (c.RopeScaling is { } s)
        {
            Console.WriteLine(string.Create(inv, $"rope_scaling llama3: factor {s.Factor}, low {s.LowFrequencyFactor}, high {s.HighFrequencyFactor}, original {s.OriginalMaxPositions}"));
        }

        Console.WriteLine($"embeddings   {(c.TieWordEmbeddings ? "tied lm_head" : "separate lm_head")}; bos {c.BosTokenId?.ToString(inv) ?? "-"}; eos [{string.Join(", ", c.EosTokenIds)}]");
        if (c.QuantizationConfig is { } q)
        {
            // One line, whatever the file's indentation.
            Console.WriteLine($"quantization {System.Text.Json.JsonSerializer.Serialize(q)}");
        }

        LlmTokenizer tokenizer = LlmTokenizer.Load(dir.Directory);
        Console.WriteLine($"tokenizer    {tokenizer.Kind}, {tokenizer.VocabularySize} tokens ({tokenizer.SpecialTokens.Count} special)");

        using SafetensorsCheckpoint checkpoint = SafetensorsCheckpoint.Open(dir.Weights);
        Console.WriteLine($"weights      {checkpoint.Files.Count} file(s), {checkpoint.TensorNames.Count} tensors, {FormatBytes(checkpoint.TotalBytes)}");
        Console.WriteLine();
        var byDType = new SortedDictionary<string, (int Count, long Bytes, long Elements)>(StringComparer.Ordinal);
        foreach (string name in checkpoint.TensorNames.Order(StringComparer.Ordinal))
        {
            TensorInfo t = checkpoint.GetTensor(name);
            string dtype = SafetensorsDTypes.ToName(t.DType);
            Console.WriteLine($"  {name,-52} {dtype,-5} [{string.Join(", ", t.Shape),-14}] {FormatBytes(t.ByteLength),10}");
            (int count, long bytes, long elements) = byDType.GetValueOrDefault(dtype);
            byDType[dtype] = (count + 1, bytes + t.ByteLength, elements + t.ElementCount);
        }

        Console.WriteLine();
        foreach ((string dtype, (int count, long bytes, long elements)) in byDType)
        {
            Console.WriteLine($"  {dtype}: {count} tensors, {elements:N0} parameters, {FormatBytes(bytes)}");
        }

        return 0;
    }

    private static string FormatBytes(long bytes) => bytes switch
    {
        >= 1L << 30 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 30):F2} GiB"),
        >= 1L << 20 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 20):F2} MiB"),
        >= 1L << 10 => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1024.0:F1} KiB"),
        _ => $"{bytes} B",
    };
}
