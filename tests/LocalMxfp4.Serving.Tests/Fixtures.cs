using LocalMxfp4.Engine.Contract;
using LocalMxfp4.Engine.Loading;
using LocalMxfp4.Engine.Sampling;
using LocalMxfp4.Models.Quantized;
using LocalMxfp4.Quantization;
using LocalMxfp4.Testing;
using LocalMxfp4.TestSupport;

[assembly: AssemblyFixture(typeof(LocalMxfp4.Serving.Tests.ServingModels))]

namespace LocalMxfp4.Serving.Tests;

/// <summary>
/// The engines the serving tests run, loaded once: the bundled stories260K (float, and W4A4 with the block Hadamard so
/// the online transform runs) and a two-layer LLaMA-3-shaped random checkpoint (GQA 4:2, 128k vocabulary; float and
/// W4A4 Hadamard).
/// </summary>
public sealed class ServingModels : IDisposable
{
    private readonly List<string> _directories = [];

    public ServingModels()
    {
        string stories = Path.Combine(SharedData.RepositoryRoot, "models", "stories260K");
        string llama = SyntheticLlamaCheckpoint.Create(new SyntheticLlamaSpec { Layers = 2, MaxPositions = 512, Sharded = false, Seed = 77 });
        _directories.Add(llama);
        Engines = new Dictionary<string, IInferenceEngine>
        {
            ["stories-f32"] = EngineLoader.Load(stories, new EngineLoadOptions { Backend = EngineBackend.Cpu, Threads = 2 }),
            ["stories-w4a4"] = EngineLoader.Load(Quantize(stories), new EngineLoadOptions { Backend = EngineBackend.Cpu, Threads = 2 }),
            ["llama3-f32"] = EngineLoader.Load(llama, new EngineLoadOptions { Backend = EngineBackend.Cpu, Threads = 2 }),
            ["llama3-w4a4"] = EngineLoader.Load(Quantize(llama), new EngineLoadOptions { Backend = EngineBackend.Cpu, Threads = 2 }),
        };
    }

    public IReadOnlyDictionary<string, IInferenceEngine> Engines { get; }

    public IInferenceEngine this[string name] => Engines[name];

    public void Dispose()
    {
        foreach (IInferenceEngine e in Engines.Values)
        {
            e.Dispose();
        }

        foreach (string d in _directories)
        {
            Directory.Delete(d, recursive: true);
        }
    }

    private string Quantize(string source)
    {
        string output = Path.Combine(Path.GetTempPath(), "lmx-serving-" + Guid.NewGuid().ToString("N")[..10]);
        new ModelQuantizer(new QuantizerOptions { Method = TransformMethod.Hadamard, Threads = 2 }).Run(source, output);
        _directories.Add(output);
        return output;
    }
}

/// <summary>Records one sequence: its tokens as they come, and how it ended.</summary>
public sealed class RecordingObserver : ISequenceObserver
{
    private readonly TaskCompletionSource<SequenceResult> _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly List<int> _tokens = [];

    /// <summary>Called with each token and its index; return false to stop the sequence.</summary>
    public Func<int, int, bool>? OnTokenHook { get; init; }

    public int CachedTokens { get; private set; } = -1;

    public IReadOnlyList<int> Tokens
    {
        get
        {
            lock (_tokens)
            {
                return [.. _tokens];
            }
        }
    }

    public Task<SequenceResult> Done => _done.Task;

    public void OnAdmitted(int cachedTokens) => CachedTokens = cachedTokens;

    public bool OnToken(int tokenId)
    {
        int index;
        lock (_tokens)
        {
            _tokens.Add(tokenId);
            index = _tokens.Count - 1;
        }

        return OnTokenHook?.Invoke(tokenId, index) ?? true;
    }

    public void OnCompleted(SequenceResult result) => _done.TrySetResult(result);

    public void OnFailed(Exception error) => _done.TrySetException(error);
}

internal static class Prompts
{
    /// <summary>Random prompts of the given lengths from token ids [minId, vocab), reproducible from <paramref name="seed"/>.</summary>
    public static int[][] Random(int seed, int vocab, params int[] lengths)
    {
        TestContext.Current.TestOutputHelper?.WriteLine($"prompt seed {seed}");
        var rng = new Random(seed);
        return lengths.Select(n => Enumerable.Range(0, n).Select(_ => rng.Next(3, Math.Min(vocab, 30000))).ToArray()).ToArray();
    }

    public static SequenceRequest Request(int[] prompt, int maxTokens, ISequenceObserver observer, SamplingOptions? sampling = null, CancellationToken? cancellation = null) => new()
    {
        PromptTokenIds = prompt,
        MaxOutputTokens = maxTokens,
        Sampling = sampling ?? SamplingOptions.Greedy,
        Observer = observer,
        CancellationToken = cancellation ?? CancellationToken.None,
    };
}
