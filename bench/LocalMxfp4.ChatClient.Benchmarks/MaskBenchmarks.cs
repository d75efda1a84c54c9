using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Engines;
using LocalMxfp4.ChatClient.Constrained;

namespace LocalMxfp4.ChatClient.Benchmarks;

/// <summary>
/// One mask computation (allowed set + logits masking over the 128,256-token LLaMA-3 vocabulary) in the decoder states
/// that cost the most or occur the most.
/// </summary>
[SimpleJob(RunStrategy.Throughput, launchCount: 1, warmupCount: 3, iterationCount: 10)]
[MemoryDiagnoser]
public class MaskBenchmarks
{
    private readonly float[] _logits = new float[BenchSetup.Tokenizer.VocabularySize];
    private GrammarTokenMask _stringBody = null!;
    private GrammarTokenMask _stringTight = null!;
    private GrammarTokenMask _objectKey = null!;
    private GrammarTokenMask _number = null!;
    private GrammarTokenMask _anyValue = null!;
    private GrammarTokenMask _toolName = null!;

    [GlobalSetup]
    public void Setup()
    {
        IReadOnlyList<(string Name, JsonGrammar Grammar)> g = BenchSetup.Grammars();
        JsonGrammar schema = g[1].Grammar;
        _stringBody = BenchSetup.MaskAfter(schema, "{\"customer\": \"Ada Lov", 512);
        _stringTight = BenchSetup.MaskAfter(schema, "{\"customer\": \"Ada Lov", 60);
        _objectKey = BenchSetup.MaskAfter(schema, "{\"customer\": \"Ada\", ", 512);
        _number = BenchSetup.MaskAfter(schema, "{\"customer\": \"Ada\", \"id\": 12", 512);
        _anyValue = BenchSetup.Mask(g[0].Grammar, 512);
        _toolName = BenchSetup.MaskAfter(g[2].Grammar, "{\"name\": \"", 512);
    }

    /// <summary>Inside a free string: the precomputed text set plus a walk of the other tokens.</summary>
    [Benchmark(Baseline = true)]
    public void StringBody() => _stringBody.Apply(_logits);

    /// <summary>Inside a string with the token budget nearly spent: every token is walked and checked against the budget.</summary>
    [Benchmark]
    public void StringBodyTightBudget() => _stringTight.Apply(_logits);

    /// <summary>After a comma in an object: only the declared keys may follow.</summary>
    [Benchmark]
    public void ObjectKey() => _objectKey.Apply(_logits);

    /// <summary>In an integer.</summary>
    [Benchmark]
    public void Number() => _number.Apply(_logits);

    /// <summary>The first token of any JSON value.</summary>
    [Benchmark]
    public void AnyValueStart() => _anyValue.Apply(_logits);

    /// <summary>The tool name of a required call.</summary>
    [Benchmark]
    public void ToolName() => _toolName.Apply(_logits);
}
