using LocalMxfp4.Models.Quantized;
using LocalMxfp4.Quantization;
using LocalMxfp4.TestSupport;

namespace LocalMxfp4.Quantization.Tests;

/// <summary>Shared inputs: stories260K, the calibration text (C4, never the evaluation text), small fast settings.</summary>
internal static class QuantizerFixtures
{
    public static string Stories => SharedData.Path("models", "stories260K");

    public static string Calibration => SharedData.Path("data", "c4-validation-2k.jsonl");

    public static string Evaluation => SharedData.Path("data", "tinystories-valid.txt");

    public static QuantizerOptions Options(TransformMethod method, bool gptq = false) => new()
    {
        Method = method,
        Gptq = gptq,
        CalibrationFile = Calibration,
        CalibrationSamples = 8,
        CalibrationSequenceLength = 128,
        RotationSteps = 32,
        Seed = 2,
        Threads = 2,
    };

    public static string TempDirectory(string prefix) => Directory.CreateTempSubdirectory(prefix).FullName;
}
