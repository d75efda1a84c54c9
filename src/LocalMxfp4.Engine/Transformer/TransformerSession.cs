using LocalMxfp4.Engine.Attention;
using LocalMxfp4.Engine.Contract;
using LocalMxfp4.Engine.Layers;
using LocalMxfp4.Models.Configuration;

namespace LocalMxfp4.Engine.Transformer;

/// <summary>
/// One sequence on the CPU engine: a private KV cache whose blocks hold positions in order (block table 0, 1, 2, …)
/// and the shared <see cref="LlamaTransformer"/> forward pass, so a session computes exactly what the batched path
/// computes for the same sequence.
/// </summary>
public sealed class TransformerSession : IInferenceSession
{
    /// <summary>Tokens per prefill chunk: activations and scratch stay bounded by the chunk, not the prompt.</summary>
    public const int PrefillChunk = 256;

    private const int BlockSize = 16;

    private readonly LlamaTransformer _transformer;
    private readonly LlamaConfig _c;
    private readonly PagedKvCache _cache;
    private readonly int[] _table;
    private readonly ForwardWorkspace _workspace;
    private bool _disposed;

    /// <summary>Creates a session with an empty KV cache of <paramref name="contextLength"/> positions.</summary>
    public TransformerSession(LlamaTransformer transformer, int contextLength)
        : this(transformer, contextLength, KvCachePrecision.Float32)
    {
    }

    /// <summary>Creates a session whose KV cache holds <paramref name="contextLength"/> positions at <paramref name="precision"/>.</summary>
    public TransformerSession(LlamaTransformer transformer, int contextLength, KvCachePrecision precision)
    {
        ArgumentNullException.ThrowIfNull(transformer);
        _transformer = transformer;
        _c = transformer.Config;
        if (contextLength <= 0 || contextLength > _c.MaxPositions)
        {
            throw new ArgumentOutOfRangeException(nameof(contextLength), contextLength, $"The context must be between 1 and the model's max_position_embeddings ({_c.MaxPositions}).");
        }

        ContextLength = contextLength;
        int blocks = (contextLength + BlockSize - 1) / BlockSize;
        _cache = new PagedKvCache(_c, blocks, BlockSize, precision);
        _table = Enumerable.Range(0, blocks).ToArray();
        _workspace = new ForwardWorkspace(_c);
    }

    /// <summary>Creates a session over <paramref name="weights"/> (a transformer of its own).</summary>
    public TransformerSession(LlamaWeights weights, ParallelRows parallel, int contextLength)
        : this(new LlamaTransformer(weights, parallel), contextLength)
    {
    }

    /// <inheritdoc />
    public int Position { get; private set; }

    /// <inheritdoc />
    public int ContextLength { get; }

    /// <summary>Bytes of KV cache committed.</summary>
    public long KvCacheBytes => _cache.CommittedBytes;

    /// <inheritdoc />
    public void Forward(ReadOnlySpan<int> tokens, Span<float> logits)
    {
        if (logits.Length < _c.VocabularySize)
        {
            throw new ArgumentException($"Logits need {_c.VocabularySize} floats.", nameof(logits));
        }

        Run(tokens, logits, allPositions: false);
    }

    /// <inheritdoc />
    public void ForwardAll(ReadOnlySpan<int> tokens, Span<float> logits)
    {
        if (logits.Length < (long)tokens.Length * _c.VocabularySize)
        {
            throw new ArgumentException($"Logits need {tokens.Length}×{_c.VocabularySize} floats.", nameof(logits));
        }

        Run(tokens, logits, allPositions: true);
    }

    /// <inheritdoc />
    public void Rewind(int position)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(position);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(position, Position);
        Position = position;
    }

    /// <summary>
    /// Runs hidden states that are already embedded (<c>[tokens, hidden]</c>, updated in place) through every decoder
    /// layer at the next positions (see <see cref="LlamaTransformer.ForwardHidden"/>). Not chunked: calibration passes
    /// must see the whole sequence in one call (the rotation search builds each site's rotation from the first input it
    /// receives); the caller already holds <c>[tokens, hidden]</c> in memory.
    /// </summary>
    public void ForwardHidden(float[] hidden, int tokens)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (Position + tokens > ContextLength)
        {
            throw new ContextOverflowException(Position, tokens, ContextLength);
        }

        _transformer.ForwardHidden(_workspace, _cache, hidden, tokens, Position, _table);
        Position += tokens;
    }

    /// <inheritdoc />
    public void Dispose() => _disposed = true;

    private void Run(ReadOnlySpan<int> tokens, Span<float> logits, bool allPositions)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        int n = tokens.Length;
        if (n == 0)
        {
            throw new ArgumentException("At least one token is needed.", nameof(tokens));
        }

        if (Position + n > ContextLength)
        {
            throw new ContextOverflowException(Position, n, ContextLength);
        }

        int vocab = _c.VocabularySize;
        int[] ids = tokens.ToArray();
        for (int start = 0; start < n; start += PrefillChunk)
        {
            int count = Math.Min(PrefillChunk, n - start);
            bool last = start + count == n;
            int logitRows = allPositions ? count : last ? 1 : 0;
            var step = new BatchSequence(ids.AsMemory(start, count), Position, _table, logitRows);
            Span<float> destination = allPositions ? logits.Slice(start * vocab, count * vocab) : logitRows > 0 ? logits[..vocab] : default;
            _transformer.Forward(_workspace, _cache, new ReadOnlySpan<BatchSequence>(ref step), destination);
            Position += count;
        }
    }
}
