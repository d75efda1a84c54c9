using System.Text.Json.Nodes;
using LocalMxfp4.Engine.Contract;
using LocalMxfp4.Serving;
using LocalMxfp4.Engine.Layers;
using LocalMxfp4.Engine.Loading;
using LocalMxfp4.Engine.Sampling;
using LocalMxfp4.Engine.Transformer;
using LocalMxfp4.Models.Quantized;
using LocalMxfp4.Numerics.Mxfp4;
using LocalMxfp4.Testing;
using LocalMxfp4.Tokenization;

namespace LocalMxfp4.Quantization.Tests;

/// <summary>One DuQuant++ model of stories260K, quantized once and written to disk, shared by the tests below.</summary>
public sealed class QuantizedStoriesFixture : IDisposable
{
    public QuantizedStoriesFixture()
    {
        Directory = Path.Combine(QuantizerFixtures.TempDirectory("lmx-qtest"), "stories-duquant");
        Summary = new ModelQuantizer(QuantizerFixtures.Options(TransformMethod.DuQuant)).Run(QuantizerFixtures.Stories, Directory);
    }

    public string Directory { get; }

    public QuantizationSummary Summary { get; }

    public void Dispose() => System.IO.Directory.Delete(Path.GetDirectoryName(Directory)!, recursive: true);
}

public class QuantizedModelTests(QuantizedStoriesFixture fixture) : IClassFixture<QuantizedStoriesFixture>
{
    private static readonly int[] Tokens = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337, 410];

    [Fact]
    public void WrittenModelDeclaresItsQuantizationAndCarriesTheTokenizer()
    {
        QuantizedModel m = QuantizedModelReader.Read(fixture.Directory);
        Assert.Equal(TransformMethod.DuQuant, m.Quantization.Method);
        Assert.Equal(ScaleRule.Even, m.Quantization.ActivationScaleRule);
        Assert.Equal(WeightScaleMode.Search, m.Quantization.WeightScales);
        Assert.Equal(0.6, m.Quantization.SmoothingAlpha);
        Assert.Equal(2, m.Quantization.Seed);
        Assert.Equal("c4-validation-2k.jsonl", m.Quantization.CalibrationSource);
        Assert.StartsWith("LocalMxfp4 lmx", m.Quantization.ToolVersion);
        Assert.True(File.Exists(Path.Combine(fixture.Directory, "tokenizer.model")));
        Assert.Equal(6, m.Layers[0].Down.Blocks); // 172 columns pad to 192
        Assert.False(m.Layers[0].OutputTransform!.IsShared); // o_proj carries its smoothing per block
        Assert.True(m.Layers[0].QkvTransform!.IsShared);
        Assert.Empty(System.IO.Directory.GetDirectories(Path.GetDirectoryName(fixture.Directory)!, ".*partial*"));
    }

    [Fact]
    public void EngineLogitsEqualTheFloat64FakeQuantReference()
    {
        QuantizedModel m = QuantizedModelReader.Read(fixture.Directory);
        using var parallel = new ParallelRows(2);
        LlamaWeights engineWeights = QuantizedModelLoader.Build(m, parallel);
        ScaleRule rule = m.Quantization.ActivationScaleRule;
        ILinear Ref(Mxfp4Matrix w, InputTransform? t) => new ReferenceMxfp4Linear(w, t is null ? null : new BlockTransform(t.Matrices, t.Blocks), rule);
        var referenceLayers = m.Layers.Select(l => new LlamaLayerWeights(
            l.AttentionNorm, Ref(l.Query, l.QkvTransform), Ref(l.Key, l.QkvTransform), Ref(l.Value, l.QkvTransform),
            Ref(l.Output, l.OutputTransform), l.MlpNorm, Ref(l.Gate, l.GateUpTransform), Ref(l.Up, l.GateUpTransform),
            Ref(l.Down, l.DownTransform))).ToArray();
        var referenceWeights = new LlamaWeights(m.Config, m.Embedding, referenceLayers, m.FinalNorm, engineWeights.LmHead);

        float[] engine = Logits(new CpuEngine(engineWeights, parallel));
        float[] reference = Logits(new CpuEngine(referenceWeights, parallel));
        FunctionPreservationTests.AssertClose(reference, engine, 1e-5);
    }

    [Fact]
    public void SaveLoadGenerateRoundTrip()
    {
        using IInferenceEngine engine = EngineLoader.Load(fixture.Directory);
        Assert.Equal("mxfp4", engine.Description.WeightFormat);
        Assert.Equal("mxfp4", engine.Description.ActivationFormat);
        LlmTokenizer tokenizer = LlmTokenizer.Load(fixture.Directory);
        string Run()
        {
            using var serving = new ServingEngine(engine, new ServingOptions { ContextLength = 128, MaxBatchSequences = 1 });
            SequenceResult result = serving.Generate([1, .. tokenizer.Encode("Once upon a time")], SamplingOptions.Greedy, 40, new HashSet<int>(), cancellationToken: TestContext.Current.CancellationToken);
            return tokenizer.Decode(result.OutputTokenIds);
        }

        string first = Run();
        Assert.Equal(first, Run());
        Assert.True(first.Split(' ', StringSplitOptions.RemoveEmptyEntries).Length > 5, first);

        // Loading from disk gives exactly the logits of the in-memory model.
        QuantizedModel fromDisk = QuantizedModelReader.Read(fixture.Directory);
        using var parallel = new ParallelRows(2);
        Assert.Equal(Logits(new CpuEngine(QuantizedModelLoader.Build(fromDisk, parallel), parallel)), Logits(engine));
    }

    private static float[] Logits(IInferenceEngine engine)
    {
        using IInferenceSession session = engine.CreateSession(64);
        var logits = new float[Tokens.Length * engine.Config.VocabularySize];
        session.ForwardAll(Tokens, logits);
        return logits;
    }
}
