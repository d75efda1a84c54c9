using System.Numerics.Tensors;
using LocalMxfp4.Engine.Attention;
using LocalMxfp4.Engine.Contract;
using LocalMxfp4.Engine.Layers;
using LocalMxfp4.Models.Configuration;

namespace LocalMxfp4.Engine.Transformer;

/// <summary>
/// The LLaMA forward pass, written once for every CPU backend and every batch shape (the number format lives in the
/// <see cref="ILinear"/> layers): embedding → per layer [RMSNorm → q,k,v → RoPE → grouped-query attention over the
/// paged KV cache → o_proj + residual → RMSNorm → SwiGLU MLP + residual] → RMSNorm → lm_head.
/// </summary>
/// <remarks>
/// A step holds any number of sequences, each with new tokens at its own positions: a whole prompt (prefill), a chunk
/// of one, or one token (decode). The linear layers run over all rows of the step at once, so each weight is streamed
/// once per step however many sequences share it. Every row's arithmetic is independent of the other rows and done in
/// a fixed order (norms, RoPE and SiLU per row; per-row dot products in the kernels; attention per row and KV head), so
/// a sequence gets the same bits alone, batched, in chunks or after a cached prefix.
/// </remarks>
public sealed class LlamaTransformer
{
    private readonly LlamaWeights _w;
    private readonly LlamaConfig _c;
    private readonly RotaryEmbedding _rope;
    private readonly ParallelRows _parallel;

    /// <summary>Runs <paramref name="weights"/> with <paramref name="parallel"/>'s threads.</summary>
    public LlamaTransformer(LlamaWeights weights, ParallelRows parallel)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(parallel);
        _w = weights;
        _c = weights.Config;
        _parallel = parallel;
        _rope = new RotaryEmbedding(_c);
    }

    /// <summary>The parameters.</summary>
    public LlamaWeights Weights => _w;

    /// <summary>The architecture.</summary>
    public LlamaConfig Config => _c;

    /// <summary>One step over <paramref name="batch"/> (see <see cref="IBatchedInferenceEngine.ForwardBatch"/>).</summary>
    public void Forward(ForwardWorkspace workspace, PagedKvCache cache, ReadOnlySpan<BatchSequence> batch, Span<float> logits)
    {
        ArgumentNullException.ThrowIfNull(workspace);
        ArgumentNullException.ThrowIfNull(cache);
        int rows = Layout(workspace, cache, batch, out int logitRows);
        if (logits.Length < (long)logitRows * _c.VocabularySize)
        {
            throw new ArgumentException($"The step asks for {logitRows} logits rows: {(long)logitRows * _c.VocabularySize} floats, but the buffer holds {logits.Length}.", nameof(logits));
        }

        int hidden = _c.HiddenSize, vocab = _c.VocabularySize;
        float[] x = workspace.X;
        int row = 0;
        foreach (BatchSequence s in batch)
        {
            ReadOnlySpan<int> tokens = s.Tokens.Span;
            for (int t = 0; t < tokens.Length; t++, row++)
            {
                int id = tokens[t];
                if ((uint)id >= (uint)vocab)
                {
                    throw new ArgumentOutOfRangeException(nameof(batch), id, $"Token id outside the vocabulary [0, {vocab}).");
                }

                _w.Embedding.AsSpan(id * hidden, hidden).CopyTo(x.AsSpan(row * hidden));
            }
        }

        RunLayers(workspace, cache, x, rows);
        if (logitRows == 0)
        {
            return;
        }

        // Only the rows that need logits pay for the final norm and the lm_head (the largest matrix of a LLaMA-3).
        float[] head = workspace.HeadInput;
        int gathered = 0;
        row = 0;
        foreach (BatchSequence s in batch)
        {
            int n = s.Tokens.Length;
            for (int t = n - s.LogitRows; t < n; t++, gathered++)
            {
                RmsNorm.Apply(x.AsSpan((row + t) * hidden, hidden), _w.FinalNorm, head.AsSpan(gathered * hidden, hidden), 1, _c.RmsNormEpsilon);
            }

            row += n;
        }

        _w.LmHead.Forward(head.AsSpan(0, logitRows * hidden), logits[..(logitRows * vocab)], logitRows);
    }

    /// <summary>
    /// Runs hidden states that are already embedded (<c>[tokens, hidden]</c>, updated in place) of one sequence through
    /// every decoder layer at positions <c>[position, position + tokens)</c>, without the final norm and lm_head. The
    /// quantizer's rotation calibration feeds averaged embeddings this way, which no token sequence could produce.
    /// </summary>
    public void ForwardHidden(ForwardWorkspace workspace, PagedKvCache cache, float[] hidden, int tokens, int position, ReadOnlyMemory<int> blockTable)
    {
        ArgumentNullException.ThrowIfNull(workspace);
        ArgumentNullException.ThrowIfNull(cache);
        ArgumentNullException.ThrowIfNull(hidden);
        if (tokens <= 0 || hidden.Length < tokens * _c.HiddenSize)
        {
            throw new ArgumentException($"Expected [{tokens}, {_c.HiddenSize}] hidden states.", nameof(hidden));
        }

        // The token ids are not used; the layout only needs the count.
        var batch = new BatchSequence(new int[tokens], position, blockTable, 0);
        int rows = Layout(workspace, cache, new ReadOnlySpan<BatchSequence>(ref batch), out _);
        RunLayers(workspace, cache, hidden, rows);
    }

    /// <summary>Checks the step, lays out its rows, commits the KV blocks it touches and builds its RoPE tables.</summary>
    private int Layout(ForwardWorkspace ws, PagedKvCache cache, ReadOnlySpan<BatchSequence> batch, out int logitRows)
    {
        if (cache.KeyValueHeads != _c.KeyValueHeadCount || cache.HeadDim != _c.HeadDim)
        {
            throw new ArgumentException("The KV cache was made for another model shape.", nameof(cache));
        }

        if (batch.IsEmpty)
        {
            throw new ArgumentException("A step needs at least one sequence.", nameof(batch));
        }

        int rows = 0;
        logitRows = 0;
        for (int i = 0; i < batch.Length; i++)
        {
            BatchSequence s = batch[i];
            int n = s.Tokens.Length;
            if (n == 0)
            {
                throw new ArgumentException($"Sequence {i} of the step has no tokens.", nameof(batch));
            }

            if (s.Position < 0 || s.Position + n > _c.MaxPositions)
            {
                throw new ContextOverflowException(s.Position, n, _c.MaxPositions);
            }

            if ((long)s.BlockTable.Length * cache.BlockSize < s.Position + n)
            {
                throw new ArgumentException($"Sequence {i}'s block table covers {(long)s.BlockTable.Length * cache.BlockSize} positions; it needs {s.Position + n}.", nameof(batch));
            }

            if (s.LogitRows < 0 || s.LogitRows > n)
            {
                throw new ArgumentOutOfRangeException(nameof(batch), s.LogitRows, $"Sequence {i} asks for logits of {s.LogitRows} of its {n} tokens.");
            }

            rows += n;
            logitRows += s.LogitRows;
        }

        ws.Ensure(rows);
        ws.Rows.Reset(rows, batch.Length);
        for (int i = 0; i < batch.Length; i++)
        {
            BatchSequence s = batch[i];
            int covered = (s.Position + s.Tokens.Length + cache.BlockSize - 1) / cache.BlockSize;
            cache.Commit(s.BlockTable.Span[..covered]);
            ws.Rows.Add(i, s.Position, s.Tokens.Length, s.BlockTable);
        }

        int half = _c.HeadDim / 2;
        for (int r = 0; r < rows; r++)
        {
            _rope.Angles(ws.Rows.Position[r], ws.Cos.AsSpan(r * half, half), ws.Sin.AsSpan(r * half, half));
        }

        return rows;
    }

    private void RunLayers(ForwardWorkspace ws, PagedKvCache cache, float[] x, int n)
    {
        for (int l = 0; l < _c.LayerCount; l++)
        {
            Attention(l, ws, cache, x, n);
            Mlp(l, ws, x, n);
        }
    }

    private void Attention(int layer, ForwardWorkspace b, PagedKvCache cache, float[] x, int n)
    {
        LlamaLayerWeights lw = _w.Layers[layer];
        int hidden = _c.HiddenSize, qWidth = _c.QueryWidth, kvWidth = _c.KeyValueWidth, half = _c.HeadDim / 2;
        RmsNorm.Apply(x, lw.AttentionNorm, b.Normed, n, _c.RmsNormEpsilon);
        LinearGroup.Forward(b.Normed, n, lw.Query, b.Q, lw.Key, b.K, lw.Value, b.V);
        for (int t = 0; t < n; t++)
        {
            ReadOnlySpan<float> cos = b.Cos.AsSpan(t * half, half), sin = b.Sin.AsSpan(t * half, half);
            _rope.Apply(b.Q.AsSpan(t * qWidth, qWidth), cos, sin);
            _rope.Apply(b.K.AsSpan(t * kvWidth, kvWidth), cos, sin);
        }

        PagedAttention.Write(cache, layer, b.K, b.V, b.Rows);
        PagedAttention.Run(cache, layer, b.Q, b.Attention, b.Rows, _c.HeadCount, _parallel);
        lw.Output.Forward(b.Attention, b.Projected, n);
        TensorPrimitives.Add(x.AsSpan(0, n * hidden), b.Projected.AsSpan(0, n * hidden), x.AsSpan(0, n * hidden));
    }

    /// <summary>Elements per SiLU work item.</summary>
    private const int SiluSegment = 1024;

    private void Mlp(int layer, ForwardWorkspace b, float[] x, int n)
    {
        LlamaLayerWeights lw = _w.Layers[layer];
        int hidden = _c.HiddenSize, inner = _c.IntermediateSize;
        RmsNorm.Apply(x, lw.MlpNorm, b.Normed, n, _c.RmsNormEpsilon);
        LinearGroup.Forward(b.Normed, n, lw.Gate, b.Gate, lw.Up, b.Up);
        // SiLU(g) · u, with SiLU(g) = g · sigmoid(g), over fixed segments of each row (so an element's arithmetic never
        // depends on the step's length), spread over the threads.
        int segments = (inner + SiluSegment - 1) / SiluSegment;
        float[] gates = b.Gate, ups = b.Up, scratch = b.Scratch;
        _parallel.For(n * segments, SiluSegment, (from, to) =>
        {
            for (int item = from; item < to; item++)
            {
                int start = ((item / segments) * inner) + ((item % segments) * SiluSegment);
                int length = Math.Min(SiluSegment, inner - ((item % segments) * SiluSegment));
                Span<float> gate = gates.AsSpan(start, length), s = scratch.AsSpan(start, length);
                TensorPrimitives.Sigmoid(gate, s);
                TensorPrimitives.Multiply(gate, s, gate);
                TensorPrimitives.Multiply(gate, ups.AsSpan(start, length), gate);
            }
        });

        lw.Down.Forward(b.Gate, b.Projected, n);
        TensorPrimitives.Add(x.AsSpan(0, n * hidden), b.Projected.AsSpan(0, n * hidden), x.AsSpan(0, n * hidden));
    }
}
