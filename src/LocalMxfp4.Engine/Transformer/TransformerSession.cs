using System.Numerics.Tensors;
using LocalMxfp4.Engine.Contract;
using LocalMxfp4.Engine.Layers;
using LocalMxfp4.Models.Configuration;

namespace LocalMxfp4.Engine.Transformer;

/// <summary>
/// The LLaMA forward pass, written once for every CPU backend (the number format lives in the
/// <see cref="ILinear"/> layers): embedding → per layer [RMSNorm → q,k,v → RoPE → grouped-query attention over the
/// KV cache → o_proj + residual → RMSNorm → SwiGLU MLP + residual] → RMSNorm → lm_head.
/// A call processes all its tokens together (prefill) or one (decode); both give the same numbers.
/// </summary>
public sealed class TransformerSession : IInferenceSession
{
    private readonly LlamaWeights _w;
    private readonly LlamaConfig _c;
    private readonly RotaryEmbedding _rope;
    private readonly ParallelRows _parallel;
    private readonly KvCache _cache;
    private LayerBuffers? _buffers;
    private float[]? _hidden;
    private bool _disposed;

    /// <summary>Creates a session with an empty KV cache of <paramref name="contextLength"/> positions.</summary>
    public TransformerSession(LlamaWeights weights, RotaryEmbedding rope, ParallelRows parallel, int contextLength)
    {
        ArgumentNullException.ThrowIfNull(weights);
        _w = weights;
        _c = weights.Config;
        _rope = rope;
        _parallel = parallel;
        if (contextLength <= 0 || contextLength > _c.MaxPositions)
        {
            throw new ArgumentOutOfRangeException(nameof(contextLength), contextLength, $"The context must be between 1 and the model's max_position_embeddings ({_c.MaxPositions}).");
        }

        _cache = new KvCache(_c.LayerCount, contextLength, _c.KeyValueWidth);
    }

    /// <inheritdoc />
    public int Position { get; private set; }

    /// <inheritdoc />
    public int ContextLength => _cache.Capacity;

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

        // Long prompts run in chunks: activations and scratch stay bounded by the chunk, not the prompt.
        int hidden = _c.HiddenSize, vocab = _c.VocabularySize;
        for (int start = 0; start < n; start += PrefillChunk)
        {
            int count = Math.Min(PrefillChunk, n - start);
            bool last = start + count == n;
            float[] x = Hidden(count);
            for (int t = 0; t < count; t++)
            {
                int id = tokens[start + t];
                if ((uint)id >= (uint)vocab)
                {
                    throw new ArgumentOutOfRangeException(nameof(tokens), id, $"Token id outside the vocabulary [0, {vocab}).");
                }

                _w.Embedding.AsSpan(id * hidden, hidden).CopyTo(x.AsSpan(t * hidden));
            }

            RunLayers(x, count);
            if (allPositions || last)
            {
                int first = allPositions ? 0 : count - 1;
                int rows = count - first;
                LayerBuffers b = Buffers(count);
                RmsNorm.Apply(x.AsSpan(first * hidden, rows * hidden), _w.FinalNorm, b.Normed, rows, _c.RmsNormEpsilon);
                _w.LmHead.Forward(b.Normed, allPositions ? logits[(start * vocab)..] : logits, rows);
            }

            Position += count;
        }
    }

    /// <summary>Tokens per prefill chunk.</summary>
    public const int PrefillChunk = 256;

    private float[] Hidden(int n)
    {
        if (_hidden is null || _hidden.Length < n * _c.HiddenSize)
        {
            _hidden = new float[n * _c.HiddenSize];
        }

        return _hidden;
    }

    private LayerBuffers Buffers(int n)
    {
        if (_buffers is null || _buffers.Rows < n)
        {
            _buffers = new LayerBuffers(_c, n);
        }

        return _buffers;
    }

    /// <summary>
    /// Runs hidden states that are already embedded (<c>[tokens, hidden]</c>, updated in place) through every decoder
    /// layer at the next positions, without the final norm and lm_head. The quantizer's rotation calibration feeds
    /// averaged embeddings this way, which no token sequence could produce.
    /// </summary>
    public void ForwardHidden(float[] hidden, int tokens)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(hidden);
        if (tokens <= 0 || hidden.Length < tokens * _c.HiddenSize)
        {
            throw new ArgumentException($"Expected [{tokens}, {_c.HiddenSize}] hidden states.", nameof(hidden));
        }

        if (Position + tokens > ContextLength)
        {
            throw new ContextOverflowException(Position, tokens, ContextLength);
        }

        // Not chunked: calibration passes must see the whole sequence in one call (the rotation search builds each
        // site's rotation from the first input it receives); the caller already holds [tokens, hidden] in memory.
        RunLayers(hidden, tokens);
        Position += tokens;
    }

    private void RunLayers(float[] x, int n)
    {
        LayerBuffers buffers = Buffers(n);
        for (int l = 0; l < _c.LayerCount; l++)
        {
            Attention(l, x, buffers, n);
            Mlp(l, x, buffers, n);
        }
    }

    private void Attention(int layer, float[] x, LayerBuffers b, int n)
    {
        LlamaLayerWeights lw = _w.Layers[layer];
        int hidden = _c.HiddenSize, qWidth = _c.QueryWidth, kvWidth = _c.KeyValueWidth, headDim = _c.HeadDim;
        RmsNorm.Apply(x, lw.AttentionNorm, b.Normed, n, _c.RmsNormEpsilon);
        LinearGroup.Forward(b.Normed, n, lw.Query, b.Q, lw.Key, b.K, lw.Value, b.V);

        Span<float> cos = stackalloc float[headDim / 2];
        Span<float> sin = stackalloc float[headDim / 2];
        for (int t = 0; t < n; t++)
        {
            int pos = Position + t;
            _rope.Angles(pos, cos, sin);
            _rope.Apply(b.Q.AsSpan(t * qWidth, qWidth), cos, sin);
            _rope.Apply(b.K.AsSpan(t * kvWidth, kvWidth), cos, sin);
            b.K.AsSpan(t * kvWidth, kvWidth).CopyTo(_cache.KeyAt(layer, pos));
            b.V.AsSpan(t * kvWidth, kvWidth).CopyTo(_cache.ValueAt(layer, pos));
        }

        int heads = _c.HeadCount, group = _c.HeadCount / _c.KeyValueHeadCount;
        int start = Position;
        float[] keys = _cache.KeyStorage(layer);
        float[] values = _cache.ValueStorage(layer);
        float invSqrt = 1f / MathF.Sqrt(headDim);
        float[] q = b.Q, attn = b.Attention;
        // One work item per (token, head); token t sees positions [0, start + t].
        _parallel.For(n * heads, (long)(start + n) * headDim * 2, (from, to) =>
        {
            float[] scores = System.Buffers.ArrayPool<float>.Shared.Rent(start + n);
            for (int item = from; item < to; item++)
            {
                int t = item / heads, h = item % heads;
                int kvHead = h / group;
                int visible = start + t + 1;
                ReadOnlySpan<float> qh = q.AsSpan((t * qWidth) + (h * headDim), headDim);
                for (int p = 0; p < visible; p++)
                {
                    scores[p] = TensorPrimitives.Dot(qh, keys.AsSpan((p * kvWidth) + (kvHead * headDim), headDim)) * invSqrt;
                }

                // Softmax with the max subtracted: TensorPrimitives.SoftMax exponentiates raw scores, which overflows
                // to Inf/Inf = NaN once a score passes ~88 (real models' attention sinks do).
                Span<float> s = scores.AsSpan(0, visible);
                TensorPrimitives.Subtract(s, TensorPrimitives.Max(s), s);
                // exp below −87 is a float32 denormal, which x86 computes through slow microcode; those weights are
                // < 1e-38 of the largest, so clamping changes nothing observable.
                TensorPrimitives.Max(s, -87f, s);
                TensorPrimitives.Exp(s, s);
                TensorPrimitives.Divide(s, TensorPrimitives.Sum(s), s);
                Span<float> outHead = attn.AsSpan((t * qWidth) + (h * headDim), headDim);
                outHead.Clear();
                for (int p = 0; p < visible; p++)
                {
                    TensorPrimitives.MultiplyAdd(values.AsSpan((p * kvWidth) + (kvHead * headDim), headDim), s[p], outHead, outHead);
                }
            }

            System.Buffers.ArrayPool<float>.Shared.Return(scores);
        });

        lw.Output.Forward(attn, b.Projected, n);
        TensorPrimitives.Add(x.AsSpan(0, n * hidden), b.Projected.AsSpan(0, n * hidden), x.AsSpan(0, n * hidden));
    }

    private void Mlp(int layer, float[] x, LayerBuffers b, int n)
    {
        LlamaLayerWeights lw = _w.Layers[layer];
        int hidden = _c.HiddenSize, inner = _c.IntermediateSize;
        RmsNorm.Apply(x, lw.MlpNorm, b.Normed, n, _c.RmsNormEpsilon);
        LinearGroup.Forward(b.Normed, n, lw.Gate, b.Gate, lw.Up, b.Up);
        Span<float> gate = b.Gate.AsSpan(0, n * inner);
        // SiLU(g) · u, with SiLU(g) = g · sigmoid(g).
        TensorPrimitives.Sigmoid(gate, b.Scratch.AsSpan(0, n * inner));
        TensorPrimitives.Multiply(gate, b.Scratch.AsSpan(0, n * inner), gate);
        TensorPrimitives.Multiply(gate, b.Up.AsSpan(0, n * inner), gate);
        lw.Down.Forward(b.Gate, b.Projected, n);
        TensorPrimitives.Add(x.AsSpan(0, n * hidden), b.Projected.AsSpan(0, n * hidden), x.AsSpan(0, n * hidden));
    }

    /// <summary>Activations of one call, reused across layers.</summary>
    private sealed class LayerBuffers(LlamaConfig c, int n)
    {
        public int Rows { get; } = n;

        public float[] Normed { get; } = new float[n * c.HiddenSize];

        public float[] Q { get; } = new float[n * c.QueryWidth];

        public float[] K { get; } = new float[n * c.KeyValueWidth];

        public float[] V { get; } = new float[n * c.KeyValueWidth];

        public float[] Attention { get; } = new float[n * c.QueryWidth];

        public float[] Projected { get; } = new float[n * c.HiddenSize];

        public float[] Gate { get; } = new float[n * c.IntermediateSize];

        public float[] Up { get; } = new float[n * c.IntermediateSize];

        public float[] Scratch { get; } = new float[n * c.IntermediateSize];
    }
}
