using System.Text.Json;
using LocalMxfp4.TestSupport;

namespace LocalMxfp4.Engine.Tests;

/// <summary>shared/models/stories260K/reference.json, computed by a float64 forward of the original weights.</summary>
internal sealed record Stories260KReference(int[] GreedyTokens, string GreedyText, float[] LogitsFirst16, float[] LogitsLastFirst16, double MeanNll)
{
    public static string ModelDirectory => SharedData.Path("models", "stories260K");

    public static Stories260KReference Load()
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(ModelDirectory, "reference.json")));
        JsonElement r = doc.RootElement;
        return new Stories260KReference(
            r.GetProperty("greedy_from_bos_tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
            r.GetProperty("greedy_text").GetString()!,
            r.GetProperty("logits_position0_first16").EnumerateArray().Select(e => e.GetSingle()).ToArray(),
            r.GetProperty("logits_last_position_first16").EnumerateArray().Select(e => e.GetSingle()).ToArray(),
            r.GetProperty("mean_nll_nats_over_greedy_tokens").GetDouble());
    }
}
