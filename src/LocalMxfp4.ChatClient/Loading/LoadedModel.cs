using System.Diagnostics;
using LocalMxfp4.ChatClient.Templates;
using LocalMxfp4.Engine.Contract;
using LocalMxfp4.Engine.Loading;
using LocalMxfp4.Models.Checkpoint;
using LocalMxfp4.Tokenization;

namespace LocalMxfp4.ChatClient.Loading;

/// <summary>Everything a client needs once its model is in memory: engine, tokenizer, template, stop ids, context.</summary>
internal sealed class LoadedModel : IDisposable
{
    private readonly bool _ownsEngine;
    private int _disposed;

    private LoadedModel(IInferenceEngine engine, LlmTokenizer tokenizer, DuQuantChatClientOptions options, string modelPath, bool ownsEngine, TimeSpan loadTime)
    {
        Engine = engine;
        Tokenizer = tokenizer;
        ModelPath = modelPath;
        _ownsEngine = ownsEngine;
        LoadTime = loadTime;
        ContextLength = ResolveContextLength(options, engine.Config.MaxPositions);
        Template = ChatTemplates.Select(options.ChatTemplate, tokenizer, options.CustomChatTemplate);
        var stops = new HashSet<int>(tokenizer.EndOfSequenceIds);
        stops.UnionWith(engine.Config.EosTokenIds);
        stops.UnionWith(Template.GetStopTokenIds(tokenizer));
        StopTokenIds = stops;
        if (engine.Config.VocabularySize < tokenizer.VocabularySize)
        {
            throw new ModelLoadException(modelPath, null,
                $"the tokenizer has {tokenizer.VocabularySize} tokens but config.json's vocab_size is {engine.Config.VocabularySize}; they belong to different models.");
        }
    }

    public IInferenceEngine Engine { get; }

    public LlmTokenizer Tokenizer { get; }

    public IChatTemplate Template { get; }

    public IReadOnlySet<int> StopTokenIds { get; }

    public int ContextLength { get; }

    public string ModelPath { get; }

    public TimeSpan LoadTime { get; }

    /// <summary>Loads the model named by <paramref name="options"/> through <see cref="EngineLoader"/>.</summary>
    public static LoadedModel Load(DuQuantChatClientOptions options)
    {
        if (string.IsNullOrWhiteSpace(options.ModelPath))
        {
            throw new InvalidOperationException("DuQuantChatClientOptions.ModelPath is not set; point it at a model directory.");
        }

        var clock = Stopwatch.StartNew();
        ModelDirectory dir = ModelDirectory.Resolve(options.ModelPath);
        LlmTokenizer tokenizer = LlmTokenizer.Load(dir.Directory);
        IInferenceEngine engine = EngineLoader.Load(dir.Weights, new EngineLoadOptions { Backend = options.Backend, Threads = options.Threads, Device = options.Device });
        try
        {
            return new LoadedModel(engine, tokenizer, options, dir.Weights, ownsEngine: true, clock.Elapsed);
        }
        catch
        {
            engine.Dispose();
            throw;
        }
    }

    /// <summary>Wraps an engine the caller loaded (and keeps owning unless <paramref name="ownsEngine"/>).</summary>
    public static LoadedModel FromEngine(IInferenceEngine engine, LlmTokenizer tokenizer, DuQuantChatClientOptions options, bool ownsEngine) =>
        new(engine, tokenizer, options, options.ModelPath is { Length: > 0 } p ? Path.GetFullPath(p) : tokenizer.SourcePath, ownsEngine, TimeSpan.Zero);

    /// <summary>The context a client gets: the option, or the model's maximum capped at the default cap.</summary>
    public static int ResolveContextLength(DuQuantChatClientOptions options, int modelMaxPositions)
    {
        int context = options.ContextLength ?? Math.Min(modelMaxPositions, DuQuantChatClientOptions.DefaultContextLengthCap);
        if (context < 2 || context > modelMaxPositions)
        {
            throw new ArgumentOutOfRangeException(nameof(options), context,
                $"ContextLength {context} is outside [2, {modelMaxPositions}] (the model's max_position_embeddings).");
        }

        return context;
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0 && _ownsEngine)
        {
            Engine.Dispose();
        }
    }
}
