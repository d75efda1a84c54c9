using LocalMxfp4.ChatClient;
using LocalMxfp4.Engine.Contract;
using LocalMxfp4.Engine.Loading;
using LocalMxfp4.Testing;
using LocalMxfp4.TestSupport;
using LocalMxfp4.Tokenization;
using Microsoft.Extensions.AI;

[assembly: AssemblyFixture(typeof(LocalMxfp4.ChatClient.Tests.Stories260KModel))]
[assembly: AssemblyFixture(typeof(LocalMxfp4.ChatClient.Tests.TinyLlama3Model))]

namespace LocalMxfp4.ChatClient.Tests;

/// <summary>The bundled stories260K (a non-chat SentencePiece story model), loaded once for the assembly.</summary>
public sealed class Stories260KModel : IDisposable
{
    public Stories260KModel()
    {
        Engine = EngineLoader.Load(Directory, new EngineLoadOptions { Backend = EngineBackend.Cpu });
        Tokenizer = LlmTokenizer.Load(Directory);
    }

    public static string Directory => Path.Combine(SharedData.RepositoryRoot, "models", "stories260K");

    public IInferenceEngine Engine { get; }

    public LlmTokenizer Tokenizer { get; }

    /// <summary>A client over the shared engine (the client does not own it).</summary>
    public DuQuantChatClient Client(Action<DuQuantChatClientOptions>? configure = null, IInferenceEngine? engine = null)
    {
        var options = new DuQuantChatClientOptions { ModelPath = Directory, PrefixCaching = engine is not InstrumentedEngine };
        configure?.Invoke(options);
        return new DuQuantChatClient(engine ?? Engine, Tokenizer, options);
    }

    public void Dispose() => Engine.Dispose();
}

/// <summary>A one-layer LLaMA-3-shaped checkpoint with random weights and the real LLaMA-3 tokenizer, generated once for the assembly.</summary>
public sealed class TinyLlama3Model : IDisposable
{
    public TinyLlama3Model()
    {
        Directory = SyntheticLlamaCheckpoint.Create(new SyntheticLlamaSpec { Layers = 1, MaxPositions = 512, Sharded = false });
        Engine = EngineLoader.Load(Directory, new EngineLoadOptions { Backend = EngineBackend.Cpu });
        Tokenizer = LlmTokenizer.Load(Directory);
    }

    public string Directory { get; }

    public IInferenceEngine Engine { get; }

    public LlmTokenizer Tokenizer { get; }

    public DuQuantChatClient Client(Action<DuQuantChatClientOptions>? configure = null, IInferenceEngine? engine = null)
    {
        var options = new DuQuantChatClientOptions { ModelPath = Directory, ContextLength = 512, PrefixCaching = engine is not InstrumentedEngine };
        configure?.Invoke(options);
        return new DuQuantChatClient(engine ?? Engine, Tokenizer, options);
    }

    public int Special(string name) => Tokenizer.TryGetSpecialTokenId(name) ?? throw new InvalidOperationException(name);

    public void Dispose()
    {
        Engine.Dispose();
        System.IO.Directory.Delete(Directory, recursive: true);
    }
}

/// <summary>
/// Wraps a real engine to make client behaviour observable: it can force the tokens the model "chooses" (a script,
/// by making the scripted id overwhelmingly likely), hold forward passes at a gate, and counts them. It forwards the
/// batched contract, so the client runs its real serving path (paged KV, continuous batching) through it.
/// </summary>
public sealed class InstrumentedEngine(IInferenceEngine inner) : IBatchedInferenceEngine
{
    private readonly Dictionary<int, int> _steps = [];
    private int _forwards;

    /// <summary>Token ids to force, in order, one per sampling step of a request; after the script, <see cref="ThenForce"/> (or the model's own choice).</summary>
    public IReadOnlyList<int> Script { get; set; } = [];

    /// <summary>Forced after the script runs out, if set (e.g. an end-of-turn id).</summary>
    public int? ThenForce { get; set; }

    /// <summary>When set, every forward pass waits for it.</summary>
    public ManualResetEventSlim? Gate { get; set; }

    /// <summary>Forward passes (batched steps or session calls) run so far.</summary>
    public int Forwards => Volatile.Read(ref _forwards);

    public Models.Configuration.LlamaConfig Config => inner.Config;

    public EngineDescription Description => inner.Description;

    private IBatchedInferenceEngine Batched => (IBatchedInferenceEngine)inner;

    public IInferenceSession CreateSession(int contextLength) => new Session(this, inner.CreateSession(contextLength));

    public long KvBytesPerToken(KvCachePrecision precision) => Batched.KvBytesPerToken(precision);

    public IPagedKvCache CreatePagedKvCache(int blocks, int blockSize, KvCachePrecision precision) => Batched.CreatePagedKvCache(blocks, blockSize, precision);

    public void ForwardBatch(IPagedKvCache cache, ReadOnlySpan<BatchSequence> batch, Span<float> logits)
    {
        Gate?.Wait(TestContext.Current.CancellationToken);
        Batched.ForwardBatch(cache, batch, logits);
        Interlocked.Increment(ref _forwards);
        int row = 0;
        lock (_steps)
        {
            foreach (BatchSequence s in batch)
            {
                // A sequence is known by its first KV block; a step at position 0 is a new request (the tests that script
                // tokens turn the prefix cache off, so every request starts there).
                int key = s.BlockTable.Span[0];
                if (s.Position == 0)
                {
                    _steps[key] = 0;
                }

                for (int r = 0; r < s.LogitRows; r++, row++)
                {
                    int step = _steps.GetValueOrDefault(key);
                    _steps[key] = step + 1;
                    if (Forced(step) is int id)
                    {
                        logits[(row * Config.VocabularySize) + id] = 1e4f;
                    }
                }
            }
        }
    }

    public void Dispose()
    {
        // The inner engine belongs to the fixture.
    }

    private int? Forced(int step) => step < Script.Count ? Script[step] : ThenForce;

    private sealed class Session(InstrumentedEngine owner, IInferenceSession inner) : IInferenceSession
    {
        private int _step;

        public int Position => inner.Position;

        public int ContextLength => inner.ContextLength;

        public void Forward(ReadOnlySpan<int> tokens, Span<float> logits)
        {
            owner.Gate?.Wait(TestContext.Current.CancellationToken);
            inner.Forward(tokens, logits);
            Interlocked.Increment(ref owner._forwards);
            if (owner.Forced(_step++) is int id)
            {
                logits[id] = 1e4f;
            }
        }

        public void ForwardAll(ReadOnlySpan<int> tokens, Span<float> logits) => inner.ForwardAll(tokens, logits);

        public void Rewind(int position)
        {
            inner.Rewind(position);
            if (position == 0)
            {
                _step = 0;
            }
        }

        public void Dispose() => inner.Dispose();
    }
}

internal static class Chat
{
    public static List<ChatMessage> User(string text) => [new ChatMessage(ChatRole.User, text)];

    public static async Task<List<ChatResponseUpdate>> CollectAsync(this IAsyncEnumerable<ChatResponseUpdate> updates)
    {
        var list = new List<ChatResponseUpdate>();
        await foreach (ChatResponseUpdate u in updates.WithCancellation(TestContext.Current.CancellationToken))
        {
            list.Add(u);
        }

        return list;
    }

    public static DuQuantCompletion Completion(this ChatResponse response) => Assert.IsType<DuQuantCompletion>(response.RawRepresentation);
}
