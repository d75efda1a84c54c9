using LocalMxfp4.Engine.Contract;
using LocalMxfp4.Serving;
using LocalMxfp4.Engine.Loading;
using LocalMxfp4.Engine.Sampling;
using LocalMxfp4.Tokenization;

namespace LocalMxfp4.Engine.Tests;

public class Stories260KTests
{
    private static readonly Stories260KReference Reference = Stories260KReference.Load();

    private static string Weights(string file) => Path.Combine(Stories260KReference.ModelDirectory, file);

    [Theory]
    [InlineData("model.safetensors")]
    [InlineData("model.bf16.safetensors")]
    public void GreedyFromBosReproducesReferenceTokensAndText(string file)
    {
        using IInferenceEngine engine = FloatModelLoader.LoadEngine(Weights(file));
        LlmTokenizer tokenizer = LlmTokenizer.Load(Stories260KReference.ModelDirectory);
        int newTokens = Reference.GreedyTokens.Length - 1;
        using var serving = new ServingEngine(engine, new ServingOptions { ContextLength = 512, MaxBatchSequences = 1 });
        StreamingDetokenizer detokenizer = tokenizer.CreateStreamingDetokenizer();
        var text = new System.Text.StringBuilder();
        SequenceResult result = serving.Generate([Reference.GreedyTokens[0]], SamplingOptions.Greedy, newTokens, new HashSet<int>(engine.Config.EosTokenIds),
            token => { text.Append(detokenizer.Append(token)); return true; }, TestContext.Current.CancellationToken);
        text.Append(detokenizer.Flush());

        Assert.Equal(Reference.GreedyTokens[1..], result.OutputTokenIds);
        Assert.Equal(Reference.GreedyText, text.ToString());
        Assert.Equal(SequenceFinish.Length, result.Finish);
    }

    [Fact]
    public void Float32LogitsAndNllMatchTheFloat64Reference()
    {
        using IInferenceEngine engine = FloatModelLoader.LoadEngine(Weights("model.safetensors"));
        int vocab = engine.Config.VocabularySize;
        int n = Reference.GreedyTokens.Length;
        var logits = new float[n * vocab];
        using IInferenceSession session = engine.CreateSession(512);
        session.ForwardAll(Reference.GreedyTokens, logits);

        AssertRelative(Reference.LogitsFirst16, logits.AsSpan(0, 16), 1e-4);
        AssertRelative(Reference.LogitsLastFirst16, logits.AsSpan((n - 1) * vocab, 16), 1e-4);
        Assert.Equal(Reference.MeanNll, MeanNll(logits, Reference.GreedyTokens, vocab), 1e-4);
    }

    [Fact]
    public void BFloat16WeightsStayCloseToTheReference()
    {
        // BF16 rounding of the weights (8 mantissa bits) moves logits by ~1e-2 relative; the tokens above are exact.
        using IInferenceEngine engine = FloatModelLoader.LoadEngine(Weights("model.bf16.safetensors"));
        int vocab = engine.Config.VocabularySize;
        int n = Reference.GreedyTokens.Length;
        var logits = new float[n * vocab];
        using IInferenceSession session = engine.CreateSession(512);
        session.ForwardAll(Reference.GreedyTokens, logits);
        AssertRelative(Reference.LogitsFirst16, logits.AsSpan(0, 16), 3e-2);
        Assert.Equal(Reference.MeanNll, MeanNll(logits, Reference.GreedyTokens, vocab), 2e-2);
    }

    [Fact]
    public void PrefillThenDecodeEqualsOneShotForward()
    {
        using IInferenceEngine engine = FloatModelLoader.LoadEngine(Weights("model.safetensors"));
        int vocab = engine.Config.VocabularySize;
        int[] tokens = Reference.GreedyTokens;
        var all = new float[tokens.Length * vocab];
        using (IInferenceSession oneShot = engine.CreateSession(512))
        {
            oneShot.ForwardAll(tokens, all);
        }

        using IInferenceSession session = engine.CreateSession(512);
        var step = new float[vocab];
        session.Forward(tokens.AsSpan(0, 20), step);
        AssertRelative(all.AsSpan(19 * vocab, vocab).ToArray(), step, 1e-5);
        for (int t = 20; t < tokens.Length; t++)
        {
            session.Forward(tokens.AsSpan(t, 1), step);
            AssertRelative(all.AsSpan(t * vocab, vocab).ToArray(), step, 1e-5);
        }

        Assert.Equal(tokens.Length, session.Position);
    }

    [Fact]
    public void ChunkedPrefillOfALongPromptEqualsDecodingItTokenByToken()
    {
        using IInferenceEngine engine = FloatModelLoader.LoadEngine(Weights("model.safetensors"));
        int vocab = engine.Config.VocabularySize;
        var rng = new Random(3);
        int[] tokens = [1, .. Enumerable.Range(0, 299).Select(_ => rng.Next(3, vocab))];
        var all = new float[tokens.Length * vocab];
        using (IInferenceSession prefill = engine.CreateSession(512))
        {
            prefill.ForwardAll(tokens, all); // crosses the 256-token chunk boundary
        }

        using IInferenceSession session = engine.CreateSession(512);
        var step = new float[vocab];
        foreach (int t in new[] { 0, 255, 256, 257, 299 })
        {
            session.Rewind(0);
            session.Forward(tokens.AsSpan(0, t + 1), step);
            AssertRelative(all.AsSpan(t * vocab, vocab).ToArray(), step, 1e-5);
        }
    }

    internal static double MeanNll(float[] logits, int[] tokens, int vocab)
    {
        double total = 0;
        for (int t = 0; t < tokens.Length - 1; t++)
        {
            ReadOnlySpan<float> row = logits.AsSpan(t * vocab, vocab);
            double max = double.NegativeInfinity;
            foreach (float v in row)
            {
                max = Math.Max(max, v);
            }

            double sum = 0;
            foreach (float v in row)
            {
                sum += Math.Exp(v - max);
            }

            total += max + Math.Log(sum) - row[tokens[t + 1]];
        }

        return total / (tokens.Length - 1);
    }

    internal static void AssertRelative(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, double tolerance)
    {
        Assert.Equal(expected.Length, actual.Length);
        double scale = 0;
        foreach (float e in expected)
        {
            scale = Math.Max(scale, Math.Abs(e));
        }

        for (int i = 0; i < expected.Length; i++)
        {
            double error = Math.Abs(expected[i] - actual[i]) / Math.Max(Math.Abs(expected[i]), 1e-3 * scale);
            Assert.True(error <= tolerance, $"element {i}: expected {expected[i]}, got {actual[i]} (relative error {error:E2} > {tolerance:E0})");
        }
    }
}
