using LocalMxfp4.Engine.Contract;
using LocalMxfp4.Engine.Evaluation;
using LocalMxfp4.Engine.Loading;
using LocalMxfp4.Models.Quantized;
using LocalMxfp4.Quantization.Fixtures;
using LocalMxfp4.Tokenization;

namespace LocalMxfp4.Quantization.Tests;

/// <summary>
/// On stories260K with injected outlier channels (test-models.md §2), DuQuant++ must beat RTN and the block Hadamard
/// clearly. Small settings keep this fast; the README's table uses the full ones.
/// </summary>
public sealed class MethodComparisonTests : IDisposable
{
    private readonly string _dir = QuantizerFixtures.TempDirectory("lmx-compare");

    public void Dispose() => Directory.Delete(_dir, true);

    [Fact]
    public void DuQuantBeatsRtnAndHadamardOnTheOutlierModel()
    {
        string outliers = Path.Combine(_dir, "outliers");
        OutlierInjection.WriteInjected(QuantizerFixtures.Stories, outliers, seed: 1);
        LlmTokenizer tokenizer = LlmTokenizer.Load(outliers);
        int[] stream = TextCorpus.TokenStream(TextCorpus.LoadDocuments(QuantizerFixtures.Evaluation), tokenizer, 1);

        double Ppl(string model)
        {
            using IInferenceEngine engine = EngineLoader.Load(model);
            return PerplexityEvaluator.Evaluate(engine, stream, 256, maxWindows: 6).Perplexity;
        }

        double Quantized(TransformMethod method)
        {
            string output = Path.Combine(_dir, method.ToString());
            new ModelQuantizer(QuantizerFixtures.Options(method)).Run(outliers, output);
            return Ppl(output);
        }

        double fp = Ppl(outliers), rtn = Quantized(TransformMethod.Rtn), hadamard = Quantized(TransformMethod.Hadamard), duquant = Quantized(TransformMethod.DuQuant);
        Assert.True(duquant < 2.5 * fp, $"FP32 {fp:F3}, DuQuant++ {duquant:F3}");
        Assert.True(duquant < rtn / 10 && duquant < hadamard / 10, $"FP32 {fp:F3}, RTN {rtn:F3}, Hadamard {hadamard:F3}, DuQuant++ {duquant:F3}");
    }
}
