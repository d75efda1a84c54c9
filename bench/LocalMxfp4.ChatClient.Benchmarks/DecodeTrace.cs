using System.Diagnostics;
using System.Globalization;
using LocalMxfp4.ChatClient.Constrained;

namespace LocalMxfp4.ChatClient.Benchmarks;

/// <summary>
/// Mask cost per token over whole constrained replies: for each grammar, replies of up to 256 tokens are decoded with a
/// random choice among the allowed tokens (uniform, which fills strings until the budget forces them shut — the slow
/// path; and structure-seeking, which picks a non-text token half the time, as a real model ends strings), and every
/// Apply (allowed set + masking 128,256 logits) is timed. Prints mean, median, 99th percentile and worst case per token.
/// </summary>
internal static class DecodeTrace
{
    public static void Run(int replies)
    {
        _ = BenchSetup.Tokenizer;
        var clock = Stopwatch.StartNew();
        VocabularyIndex index = VocabularyIndex.For(BenchSetup.Tokenizer);
        Console.WriteLine($"Vocabulary {index.Size:N0} tokens; index built in {clock.Elapsed.TotalMilliseconds:F0} ms " +
            $"({index.All.NodeCount:N0} trie nodes, {index.StringBodyCount:N0} plain-text tokens).");
        Console.WriteLine($"Machine: {Environment.ProcessorCount} cores, {System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture}, .NET {Environment.Version}");
        Console.WriteLine();
        Console.WriteLine($"{"grammar",-22} {"policy",-10} {"tokens",7} {"mean µs",9} {"p50 µs",8} {"p99 µs",8} {"max µs",8}");
        var all = new List<double>();
        float[] logits = new float[index.Size];
        // One untimed pass first, so tiered JIT compilation is not counted as mask cost.
        foreach ((string _, JsonGrammar grammar) in BenchSetup.Grammars())
        {
            Decode(grammar, new Random(-1), structural: false, logits, index, null);
        }

        foreach ((string name, JsonGrammar grammar) in BenchSetup.Grammars())
        {
            foreach (bool structural in new[] { false, true })
            {
                var times = new List<double>();
                for (int seed = 0; seed < replies; seed++)
                {
                    Decode(grammar, new Random(seed), structural, logits, index, times);
                }

                all.AddRange(times);
                Print(name, structural ? "structure" : "uniform", times);
            }
        }

        Print("all", "", all);
    }

    private static void Decode(JsonGrammar grammar, Random random, bool structural, float[] logits, VocabularyIndex index, List<double>? times)
    {
        GrammarTokenMask mask = BenchSetup.Mask(grammar, 256);
        while (true)
        {
            // Best of three: the mask of one state is deterministic, so the fastest run is its cost without the
            // preemptions a shared machine adds.
            double best = double.MaxValue;
            for (int run = 0; run < 3; run++)
            {
                long start = Stopwatch.GetTimestamp();
                mask.Apply(logits);
                best = Math.Min(best, Stopwatch.GetElapsedTime(start).TotalMicroseconds);
            }

            times?.Add(best);
            int next = Choose(logits, index, random, structural);
            if (BenchSetup.Tokenizer.IsEndOfSequence(next))
            {
                return;
            }

            mask.Accept(next);
        }
    }

    private static int Choose(float[] logits, VocabularyIndex index, Random random, bool structural)
    {
        var allowed = new List<int>();
        var other = new List<int>();
        for (int i = 0; i < logits.Length; i++)
        {
            if (!float.IsNegativeInfinity(logits[i]))
            {
                allowed.Add(i);
                if ((index.StringBody[i >> 6] & (1UL << (i & 63))) == 0)
                {
                    other.Add(i);
                }
            }

            logits[i] = 0;
        }

        List<int> from = structural && other.Count > 0 && random.Next(2) == 0 ? other : allowed;
        return from[random.Next(from.Count)];
    }

    private static void Print(string name, string policy, List<double> times)
    {
        double[] sorted = [.. times.Order()];
        string F(double v) => v.ToString("F1", CultureInfo.InvariantCulture);
        Console.WriteLine($"{name,-22} {policy,-10} {times.Count,7} {F(times.Average()),9} {F(sorted[sorted.Length / 2]),8} {F(sorted[(int)(sorted.Length * 0.99)]),8} {F(sorted[^1]),8}");
    }
}
