using LocalMxfp4.Engine.Sampling;

namespace LocalMxfp4.Engine.Tests;

public class SamplerTests
{
    private static float[] Logits(params float[] v) => v;

    [Fact]
    public void GreedyTakesTheArgMaxAndTheLowestIdOnTies()
    {
        var s = new Sampler(SamplingOptions.Greedy);
        Assert.Equal(2, s.Sample(Logits(0, 1, 5, 5, 3), []));
    }

    [Fact]
    public void SameSeedSameDrawsDifferentSeedDifferentDraws()
    {
        float[] logits = Enumerable.Range(0, 50).Select(i => (float)Math.Sin(i)).ToArray();
        int[] Draw(int seed)
        {
            var s = new Sampler(new SamplingOptions { Temperature = 1, Seed = seed });
            return Enumerable.Range(0, 40).Select(_ => s.Sample((float[])logits.Clone(), [])).ToArray();
        }

        Assert.Equal(Draw(7), Draw(7));
        Assert.NotEqual(Draw(7), Draw(8));
    }

    [Fact]
    public void DrawsFollowTheTemperatureSoftmax()
    {
        float[] logits = [2f, 1f, 0f, -1f];
        const float temperature = 0.7f;
        var s = new Sampler(new SamplingOptions { Temperature = temperature, Seed = 1 });
        var counts = new int[4];
        const int draws = 40000;
        for (int i = 0; i < draws; i++)
        {
            counts[s.Sample((float[])logits.Clone(), [])]++;
        }

        double z = logits.Sum(l => Math.Exp(l / temperature));
        for (int i = 0; i < 4; i++)
        {
            double p = Math.Exp(logits[i] / temperature) / z;
            double sigma = Math.Sqrt(p * (1 - p) / draws);
            Assert.InRange(counts[i] / (double)draws, p - (5 * sigma), p + (5 * sigma));
        }
    }

    [Fact]
    public void TopKAndTopPRestrictTheCandidates()
    {
        float[] logits = [3f, 2.9f, 2.8f, -5f, -6f];
        var topK = new Sampler(new SamplingOptions { Temperature = 5, TopK = 2, Seed = 3 });
        var topP = new Sampler(new SamplingOptions { Temperature = 1, TopP = 0.01f, Seed = 3 });
        for (int i = 0; i < 500; i++)
        {
            Assert.InRange(topK.Sample((float[])logits.Clone(), []), 0, 1);
            Assert.Equal(0, topP.Sample((float[])logits.Clone(), []));
        }
    }

    [Fact]
    public void PenaltiesLowerSeenTokens()
    {
        // Token 0 leads, but it was seen; each penalty alone must hand the argmax to token 1.
        float[] logits = [2f, 1.5f, 0f];
        int[] context = [0, 0, 2];
        Assert.Equal(1, new Sampler(SamplingOptions.Greedy with { RepetitionPenalty = 1.5f }).Sample((float[])logits.Clone(), context));
        Assert.Equal(1, new Sampler(SamplingOptions.Greedy with { FrequencyPenalty = 0.3f }).Sample((float[])logits.Clone(), context));
        Assert.Equal(1, new Sampler(SamplingOptions.Greedy with { PresencePenalty = 0.6f }).Sample((float[])logits.Clone(), context));
        Assert.Equal(0, new Sampler(SamplingOptions.Greedy with { PresencePenalty = 0.4f }).Sample((float[])logits.Clone(), context));
        // Outside the window the token is no longer penalised.
        Assert.Equal(0, new Sampler(SamplingOptions.Greedy with { PresencePenalty = 5f, PenaltyWindow = 1 }).Sample((float[])logits.Clone(), context));

        // The repetition penalty multiplies negative logits (makes them more negative).
        float[] negative = [-1f, -1.2f];
        Assert.Equal(1, new Sampler(SamplingOptions.Greedy with { RepetitionPenalty = 1.5f }).Sample(negative, [0]));
    }

    [Theory]
    [InlineData(0f)]
    [InlineData(0.8f)]
    public void NonFiniteLogitsAreATypedErrorNotAHangOrTokenZero(float temperature)
    {
        var s = new Sampler(new SamplingOptions { Temperature = temperature, TopP = 0.9f, Seed = 1 });
        Assert.Throws<NonFiniteLogitsException>(() => s.Sample(new[] { 1f, float.NaN, 2f }, []));
        Assert.Throws<NonFiniteLogitsException>(() => s.Sample(new[] { 1f, float.PositiveInfinity }, []));
    }

    [Theory]
    [InlineData(-1f, 0, 1f, 1f)]
    [InlineData(1f, -1, 1f, 1f)]
    [InlineData(1f, 0, 0f, 1f)]
    [InlineData(1f, 0, 1.5f, 1f)]
    [InlineData(1f, 0, 1f, 0f)]
    [InlineData(float.NaN, 0, 1f, 1f)]
    public void InvalidOptionsAreRejectedWithTheirName(float temperature, int topK, float topP, float repetition)
    {
        var options = new SamplingOptions { Temperature = temperature, TopK = topK, TopP = topP, RepetitionPenalty = repetition };
        Assert.Throws<ArgumentOutOfRangeException>(() => new Sampler(options));
    }

    [Fact]
    public void TopPAndTopKOnALlama3SizedVocabularyDrawOnlyFromTheBruteForceSets()
    {
        var rng = new Random(5);
        float[] logits = Enumerable.Range(0, 128256).Select(_ => (float)(OrthogonalGaussian(rng) * 3)).ToArray();
        int[] byLogit = Enumerable.Range(0, logits.Length).OrderByDescending(i => logits[i]).ThenBy(i => i).ToArray();
        double[] p = byLogit.Select(i => Math.Exp(logits[i] - logits[byLogit[0]])).ToArray();
        double total = p.Sum(), cumulative = 0;
        var nucleus = new HashSet<int>();
        for (int i = 0; i < p.Length && cumulative < 0.9 * total; i++)
        {
            cumulative += p[i];
            nucleus.Add(byLogit[i]);
        }

        var top40 = byLogit.Take(40).ToHashSet();
        var topP = new Sampler(new SamplingOptions { Temperature = 1, TopP = 0.9f, Seed = 9 });
        var topK = new Sampler(new SamplingOptions { Temperature = 1, TopK = 40, Seed = 9 });
        var seen = new HashSet<int>();
        for (int draw = 0; draw < 300; draw++)
        {
            int a = topP.Sample((float[])logits.Clone(), []);
            Assert.Contains(a, nucleus);
            seen.Add(a);
            Assert.Contains(topK.Sample((float[])logits.Clone(), []), top40);
        }

        Assert.True(seen.Count > 50, $"only {seen.Count} distinct tokens drawn from a nucleus of {nucleus.Count}");
    }

    private static double OrthogonalGaussian(Random rng) =>
        Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
}
