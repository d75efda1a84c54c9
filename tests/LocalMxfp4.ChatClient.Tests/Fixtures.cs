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
        var options = new DuQuantChatClientOptions { ModelPath = Directory };
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
        var options = new DuQuantChatClientOptions { ModelPath = Directory, ContextLength = 512 };
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
/// by making the scripted id overwhelmingly likely), hold forward passes at a gate, and counts them.
/// </summary>
public sealed class InstrumentedEngine(IInferenceEngine inner) : IInferenceEngine
{
    private int _forwards;

    /// <summary>Token ids to force, in order, one per sampling step; after the script, <see cref="ThenForce"/> (or the model's own choice).</summary>
    public IReadOnlyList<int> Script { get; set; } = [];

    /// <summary>Forced after the script runs out, if set (e.g. an end-of-turn id).</summary>
    public int? ThenForce { get; set; }

    /// <summary>When set, every forward pass waits for it.</summary>
    public ManualResetEventSlim? Gate { get; set; }

    /// <summary>Forward passes run so far, over all sessions.</summary>
    public int Forwards => Volatile.Read(ref _forwards);

    /// <summary>Rewinds to position 0 so far (the client does one after each request).</summary>
    public int Rewinds;

    public Models.Configuration.LlamaConfig Config => inner.Config;

    public EngineDescription Description => inner.Description;

    public IInferenceSession CreateSession(int contextLength) => new Session(this, inner.CreateSession(contextLength));

    public void Dispose()
    {
        // The inner engine belongs to the fixture.
    }

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
            int? forced = _step < owner.Script.Count ? owner.Script[_step] : owner.ThenForce;
            _step++;
            if (forced is int id)
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
                Interlocked.Increment(ref owner.Rewinds);
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
