using LocalMxfp4.Engine.Contract;
using LocalMxfp4.Serving;
using LocalMxfp4.Engine.Loading;
using LocalMxfp4.Engine.Sampling;
using LocalMxfp4.Models.Configuration;
using LocalMxfp4.Testing;
using LocalMxfp4.Tokenization;

namespace LocalMxfp4.Engine.Tests;

/// <summary>One generated LLaMA-3-shaped checkpoint (BF16, two shards + index, llama3 RoPE scaling, untied head, real tokenizer) per test class.</summary>
public sealed class TinyLlama3Fixture : IDisposable
{
    public TinyLlama3Fixture()
    {
        Directory = SyntheticLlamaCheckpoint.Create(new SyntheticLlamaSpec());
        Engine = FloatModelLoader.LoadEngine(Directory);
        Tokenizer = LlmTokenizer.Load(Directory);
    }

    public string Directory { get; }

    public IInferenceEngine Engine { get; }

    public LlmTokenizer Tokenizer { get; }

    public void Dispose()
    {
        Engine.Dispose();
        System.IO.Directory.Delete(Directory, recursive: true);
    }
}

public class TinyLlama3Tests(TinyLlama3Fixture fixture) : IClassFixture<TinyLlama3Fixture>
{
    [Fact]
    public void LoadsEveryPartOfARealCheckpointLayout()
    {
        LlamaConfig c = fixture.Engine.Config;
        Assert.True(File.Exists(Path.Combine(fixture.Directory, "model.safetensors.index.json")));
        Assert.Equal(2, System.IO.Directory.GetFiles(fixture.Directory, "model-*-of-*.safetensors").Length);
        Assert.Equal(128256, c.VocabularySize);
        Assert.False(c.TieWordEmbeddings);
        Assert.NotNull(c.RopeScaling);
        Assert.Equal(128000, c.BosTokenId);
        Assert.Equal([128001, 128008, 128009], c.EosTokenIds);
        Assert.Equal(0.6, c.Generation.Temperature);
        Assert.Equal(128256, fixture.Tokenizer.VocabularySize);
    }

    [Fact]
    public void GreedyGenerationIsDeterministic()
    {
        int[] first = Generate(SamplingOptions.Greedy);
        int[] second = Generate(SamplingOptions.Greedy);
        Assert.Equal(24, first.Length);
        Assert.Equal(first, second);
    }

    [Fact]
    public void SeededSamplingIsDeterministicAndSeedsDiffer()
    {
        var options = new SamplingOptions { Temperature = 1.0f, TopP = 0.95f, TopK = 200, Seed = 42 };
        int[] a = Generate(options);
        int[] b = Generate(options);
        int[] c = Generate(options with { Seed = 43 });
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
    }

    [Fact]
    public void PrefillThenDecodeGivesTheLogitsOfRecomputingTheWholeSequence()
    {
        int vocab = fixture.Engine.Config.VocabularySize;
        int[] prompt = [128000, .. fixture.Tokenizer.Encode("The quick brown fox jumps over the lazy dog, and then")];
        int n = prompt.Length;
        const int decodeSteps = 12;

        // Prefill the prompt, then decode greedily, recording each step's logits.
        using IInferenceSession session = fixture.Engine.CreateSession(128);
        var logits = new float[vocab];
        session.Forward(prompt, logits);
        var sequence = new List<int>(prompt);
        var stepLogits = new List<float[]>();
        for (int s = 0; s < decodeSteps; s++)
        {
            int next = Sampler.ArgMax(logits);
            sequence.Add(next);
            session.Forward([next], logits);
            stepLogits.Add((float[])logits.Clone());
        }

        // Recompute the whole sequence in one call without any cache reuse.
        using IInferenceSession fresh = fixture.Engine.CreateSession(128);
        var all = new float[sequence.Count * vocab];
        fresh.ForwardAll(sequence.ToArray(), all);
        for (int s = 0; s < decodeSteps; s++)
        {
            Stories260KTests.AssertRelative(all.AsSpan((n + s) * vocab, vocab).ToArray(), stepLogits[s], 1e-4);
        }
    }

    [Fact]
    public void RewindReplaysTheSameLogits()
    {
        int vocab = fixture.Engine.Config.VocabularySize;
        using IInferenceSession session = fixture.Engine.CreateSession(64);
        var a = new float[vocab];
        var b = new float[vocab];
        session.Forward([128000, 9906, 11], a);
        session.Forward([856], a);
        session.Rewind(3);
        session.Forward([856], b);
        Assert.Equal(a, b);
    }

    [Fact]
    public void ContextOverflowIsATypedError()
    {
        using IInferenceSession session = fixture.Engine.CreateSession(4);
        var logits = new float[fixture.Engine.Config.VocabularySize];
        session.Forward([1, 2, 3], logits);
        ContextOverflowException e = Assert.Throws<ContextOverflowException>(() => session.Forward([4, 5], logits));
        Assert.Equal(3, e.Position);
        Assert.Equal(2, e.Requested);
        Assert.Equal(4, e.ContextLength);
        Assert.Throws<ArgumentOutOfRangeException>(() => fixture.Engine.CreateSession(100_000));
    }

    private int[] Generate(SamplingOptions sampling)
    {
        using var serving = new ServingEngine(fixture.Engine, new ServingOptions { ContextLength = 64, MaxBatchSequences = 1 });
        int[] prompt = [128000, .. fixture.Tokenizer.Encode("Hello, my dog is cute")];
        return [.. serving.Generate(prompt, sampling, 24, new HashSet<int>(), cancellationToken: TestContext.Current.CancellationToken).OutputTokenIds];
    }
}
