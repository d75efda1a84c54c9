using LocalMxfp4.Engine.Contract;
using LocalMxfp4.Models.Configuration;

namespace LocalMxfp4.Cuda;

/// <summary>
/// One sequence on the GPU: its KV cache and activation buffers, a stream, and the decode step captured as a CUDA graph.
/// Besides the <see cref="IInferenceSession"/> contract it samples on the device (<see cref="CudaSampler"/>) and runs
/// greedy decode loops without returning to the host between tokens (<see cref="DecodeGreedy"/>). Not thread-safe.
/// </summary>
public sealed unsafe class CudaSession : IInferenceSession
{
    /// <summary>Positions per attention chunk in decode (flash-decoding split).</summary>
    internal const int DecodeChunk = 32;

    /// <summary>Positions per attention chunk in prefill.</summary>
    internal const int PrefillChunk = 256;

    private const int ArgmaxParts = 128;

    private readonly CudaEngine _engine;
    private readonly LlamaConfig _c;
    private readonly CudaKernels _k;
    private readonly CudaContext _ctx;
    private readonly List<IDisposable> _owned = [];
    private readonly int _batch, _qkvWidth, _qWidth, _kvWidth, _inner2, _pbMax;
    private readonly float _attentionScale;
    private readonly DeviceBuffer[] _keys, _values;
    private readonly DeviceBuffer _x, _qkv, _gu, _codes, _exps, _partO, _partML, _normed, _logits;
    private readonly DeviceBuffer _cos, _sin, _ids, _state, _history, _argValues, _argIndices, _probs, _keysScratch, _penaltyIds, _penaltyCounts;
    private readonly PinnedBuffer _pinned;
    private readonly DeviceBuffer? _packedActivations;
    private DeviceBuffer? _logitsAll;
    private CudaGraphExec? _decodeGraph;
    private CudaGemvKernel _gemv;
    private Action<string>? _marker;
    private bool _disposed;

    internal CudaSession(CudaEngine engine, int contextLength)
    {
        _engine = engine;
        _c = engine.Config;
        _k = engine.Kernels;
        _ctx = engine.Context;
        ContextLength = contextLength;
        _batch = Math.Min(engine.Options.MaxBatchTokens, contextLength);
        _qWidth = _c.QueryWidth;
        _kvWidth = _c.KeyValueWidth;
        _qkvWidth = _qWidth + (2 * _kvWidth);
        _inner2 = 2 * _c.IntermediateSize;
        _pbMax = new[] { _c.HiddenSize, _qWidth, _c.IntermediateSize }.Max(CudaLayout.PaddedBlocks);
        _attentionScale = 1f / MathF.Sqrt(_c.HeadDim);
        KvCache = engine.Options.KvCache;
        _gemv = engine.GemvKernel;
        int kvBytes = KvCache == CudaKvCacheFormat.BFloat16 ? 2 : 4;
        int hidden = _c.HiddenSize, heads = _c.HeadCount, d = _c.HeadDim;
        long partChunks = Math.Max((long)_batch * CeilDiv(contextLength, PrefillChunk), CeilDiv(contextLength, DecodeChunk));

        _ctx.MakeCurrent();
        try
        {
            Stream = Own(CudaStream.Create(_ctx));
            Stream.ProgrammaticLaunch = engine.Options.ProgrammaticLaunch && _ctx.ComputeCapability.Major >= 9;
            _keys = new DeviceBuffer[_c.LayerCount];
            _values = new DeviceBuffer[_c.LayerCount];
            for (int l = 0; l < _c.LayerCount; l++)
            {
                _keys[l] = Alloc((long)_c.KeyValueHeadCount * contextLength * d * kvBytes);
                _values[l] = Alloc((long)_c.KeyValueHeadCount * contextLength * d * kvBytes);
            }

            _x = Alloc((long)_batch * hidden * 4);
            _qkv = Alloc((long)_batch * _qkvWidth * 4);
            _gu = Alloc((long)_batch * _inner2 * 4);
            _codes = Alloc((long)_batch * _pbMax * 32);
            _exps = Alloc((long)_batch * _pbMax);
            if (_k.GemmMxf4Sm120 is not null)
            {
                _packedActivations = Alloc((long)_batch * _pbMax * 16); // standard MXFP4 planes for the native FP4 GEMM
            }

            _partO = Alloc(partChunks * heads * d * 4);
            _partML = Alloc(partChunks * heads * 2 * 4);
            _normed = Alloc((long)_batch * hidden * 4);
            _logits = Alloc((long)_c.VocabularySize * 4);
            _ids = Alloc((long)_batch * 4);
            _state = Alloc(4 * 4); // token, pos, step, sampled token
            _history = Alloc((long)contextLength * 4);
            _argValues = Alloc(ArgmaxParts * 4);
            _argIndices = Alloc(ArgmaxParts * 4);
            _probs = Alloc((long)_c.VocabularySize * 4);
            _keysScratch = Alloc((long)CudaKernels.SampleCapacity * 8);
            _penaltyIds = Alloc(4096 * 4);
            _penaltyCounts = Alloc(4096 * 4);
            _pinned = Own(PinnedBuffer.Allocate(_ctx, Math.Max((long)_c.VocabularySize * 4, (long)contextLength * 4)));

            // RoPE tables in float64 → float, exactly as RotaryEmbedding.Angles.
            int half = d / 2;
            var rope = new Engine.Layers.RotaryEmbedding(_c);
            var cos = new float[(long)contextLength * half];
            var sin = new float[(long)contextLength * half];
            for (int p = 0; p < contextLength; p++)
            {
                rope.Angles(p, cos.AsSpan(p * half, half), sin.AsSpan(p * half, half));
            }

            _cos = Own(DeviceBuffer.Upload<float>(_ctx, cos));
            _sin = Own(DeviceBuffer.Upload<float>(_ctx, sin));
        }
        catch (CudaOutOfMemoryException e)
        {
            DisposeOwned();
            long kv = CudaMemoryRequirements.KvCache(_c, contextLength, KvCache);
            (long free, long total) = _ctx.MemoryInfo;
            throw new CudaOutOfMemoryException(e, $"{_ctx.Name} has too little memory for a {contextLength}-token session: its KV cache alone needs {CudaMemoryRequirements.Format(kv)} ({KvCache}), plus work buffers for {_batch}-token prefill slices, and {CudaMemoryRequirements.Format(free)} of {CudaMemoryRequirements.Format(total)} is free with the model loaded ({e.ErrorName} in {e.Call}). Use a shorter context, the bf16 KV cache or a smaller MaxBatchTokens.");
        }
        catch
        {
            DisposeOwned();
            throw;
        }
    }

    /// <inheritdoc />
    public int Position { get; private set; }

    /// <inheritdoc />
    public int ContextLength { get; }

    /// <summary>The KV cache precision.</summary>
    public CudaKvCacheFormat KvCache { get; }

    /// <summary>The session's stream.</summary>
    public CudaStream Stream { get; } = null!;

    /// <summary>The engine.</summary>
    public CudaEngine Engine => _engine;

    /// <summary>
    /// The decode GEMV kernel (resolved from <see cref="CudaEngineOptions.Gemv"/>). Setting it drops the captured decode
    /// graph, so the next step captures one with the new kernel (benchmarks compare kernels on one upload this way).
    /// </summary>
    /// <exception cref="NotSupportedException">The FP8 kernel is not available on this GPU.</exception>
    public CudaGemvKernel GemvKernel
    {
        get => _gemv;
        set
        {
            CudaGemvKernel resolved = _k.Resolve(value);
            if (resolved != _gemv)
            {
                _gemv = resolved;
                ResetDecodeGraph();
            }
        }
    }

    /// <summary>Drops the captured decode graph (after a kernel choice changed), so the next step captures a new one.</summary>
    internal void ResetDecodeGraph()
    {
        _decodeGraph?.Dispose();
        _decodeGraph = null;
    }

    /// <summary>The prefill GEMM: "native FP4 (sm_120a)" on compute capability 12.x with the Blackwell fatbin, else "int8 tensor cores".</summary>
    public string PrefillKernel => _packedActivations is not null ? "native FP4 block-scaled mma (sm_120a)" : "int8 tensor cores (mma.sync m16n8k32 s8)";

    /// <summary>Kernel launches in the captured decode graph (0 before the first graph decode).</summary>
    public int DecodeGraphNodes => _decodeGraph?.Nodes ?? 0;

    /// <inheritdoc />
    public void Forward(ReadOnlySpan<int> tokens, Span<float> logits)
    {
        if (logits.Length < _c.VocabularySize)
        {
            throw new ArgumentException($"Logits need {_c.VocabularySize} floats.", nameof(logits));
        }

        ForwardToDevice(tokens);
        CopyLogits(logits);
    }

    /// <summary>Runs <paramref name="tokens"/> and leaves the last token's logits on the device (for <see cref="CudaSampler"/>).</summary>
    public void ForwardToDevice(ReadOnlySpan<int> tokens)
    {
        Validate(tokens);
        _ctx.MakeCurrent();
        if (tokens.Length == 1 && _engine.Options.UseGraphs)
        {
            SetInt(StatePointer(0), tokens[0]);
            SetInt(StatePointer(1), Position);
            SetInt(StatePointer(2), 0);
            DecodeGraph().Launch(Stream);
            Position++;
            return;
        }

        for (int start = 0; start < tokens.Length; start += _batch)
        {
            int n = Math.Min(_batch, tokens.Length - start);
            UploadIds(tokens.Slice(start, n));
            SetInt(StatePointer(1), Position);
            EnqueueLayers(n, _ids.Pointer, graphShape: false);
            if (start + n == tokens.Length)
            {
                EnqueueHead(n - 1, 1, _logits.Pointer);
            }

            Position += n;
        }
    }

    /// <inheritdoc />
    public void ForwardAll(ReadOnlySpan<int> tokens, Span<float> logits)
    {
        int vocab = _c.VocabularySize;
        if (logits.Length < (long)tokens.Length * vocab)
        {
            throw new ArgumentException($"Logits need {tokens.Length}×{vocab} floats.", nameof(logits));
        }

        Validate(tokens);
        _ctx.MakeCurrent();
        if (_logitsAll is null)
        {
            _logitsAll = Alloc((long)_batch * vocab * 4);
        }

        for (int start = 0; start < tokens.Length; start += _batch)
        {
            int n = Math.Min(_batch, tokens.Length - start);
            UploadIds(tokens.Slice(start, n));
            SetInt(StatePointer(1), Position);
            EnqueueLayers(n, _ids.Pointer, graphShape: false);
            EnqueueHead(0, n, _logitsAll.Pointer);
            fixed (float* dst = logits.Slice(start * vocab, n * vocab))
            {
                Stream.CopyToHost(dst, _logitsAll.Pointer, (long)n * vocab * 4);
                Stream.Synchronize();
            }

            Position += n;
        }
    }

    /// <inheritdoc />
    public void Rewind(int position)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(position);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(position, Position);
        Position = position;
    }

    /// <summary>
    /// Feeds <paramref name="firstToken"/>, then greedily decodes <paramref name="output"/>.Length tokens entirely on
    /// the GPU (one graph launch per token, argmax on the device feeding the next step; no host round trip), and writes
    /// the generated ids. Each output token is the argmax after the previous one, as the CPU greedy loop.
    /// </summary>
    public void DecodeGreedy(int firstToken, Span<int> output)
    {
        int count = output.Length;
        if (count == 0)
        {
            return;
        }

        Validate([firstToken]);
        if (Position + count > ContextLength)
        {
            throw new ContextOverflowException(Position, count, ContextLength);
        }

        _ctx.MakeCurrent();
        CudaGraphExec graph = DecodeGraph();
        SetInt(StatePointer(0), firstToken);
        SetInt(StatePointer(1), Position);
        SetInt(StatePointer(2), 0);
        for (int i = 0; i < count; i++)
        {
            graph.Launch(Stream);
        }

        Stream.CopyToHost(_pinned.Pointer, _history.Pointer, (long)count * 4);
        Stream.Synchronize();
        _pinned.AsSpan<int>()[..count].CopyTo(output);
        Position += count;
    }

    /// <summary>Copies the logits left on the device by the last <see cref="ForwardToDevice"/> into <paramref name="logits"/>.</summary>
    public void CopyLogits(Span<float> logits)
    {
        _ctx.MakeCurrent();
        int vocab = _c.VocabularySize;
        Stream.CopyToHost(_pinned.Pointer, _logits.Pointer, (long)vocab * 4);
        Stream.Synchronize();
        _pinned.AsSpan<float>()[..vocab].CopyTo(logits);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        if (!_ctx.IsClosed)
        {
            _ctx.MakeCurrent();
            Stream.Synchronize();
        }

        _decodeGraph?.Dispose();
        _logitsAll?.Dispose();
        DisposeOwned();
    }

    /// <summary>Greedy on the device: the argmax of the current logits (after optional penalties).</summary>
    internal int ArgMaxOnDevice()
    {
        _ctx.MakeCurrent();
        EnqueueArgmax(StatePointer(3), 0, 0, 0);
        return ReadState(3);
    }

    /// <summary>Applies penalties (distinct ids with their counts) to the device logits.</summary>
    internal void ApplyPenalties(ReadOnlySpan<int> ids, ReadOnlySpan<int> counts, float repetition, float frequency, float presence)
    {
        int n = ids.Length;
        if (n == 0)
        {
            return;
        }

        if (n > 4096)
        {
            throw new NotSupportedException("At most 4096 distinct tokens in the penalty window are supported on the GPU.");
        }

        _ctx.MakeCurrent();
        fixed (int* i = ids)
        fixed (int* c = counts)
        {
            Stream.CopyToDevice(_penaltyIds.Pointer, i, n * 4L);
            Stream.CopyToDevice(_penaltyCounts.Pointer, c, n * 4L);
        }

        Stream.Launch(_k.Penalties, (CeilDiv(n, 256), 1, 1), (256, 1, 1), 0, _logits, _penaltyIds, _penaltyCounts, n, repetition, frequency, presence);
    }

    /// <summary>Temperature / top-k / top-p draw on the device with uniform <paramref name="u"/>; −1 when the candidates exceed the device capacity.</summary>
    internal int SampleOnDevice(float temperature, int topK, float topP, double u)
    {
        _ctx.MakeCurrent();
        Stream.Launch(_k.Sample, (1, 1, 1), (1024, 1, 1), 0,
            _logits, _c.VocabularySize, temperature, topK, topP, u, _probs, _keysScratch, CudaKernels.SampleCapacity, StatePointer(3));
        return ReadState(3);
    }

    // ---- the forward pass -------------------------------------------------------------------------------------

    private CudaGraphExec DecodeGraph()
    {
        if (_decodeGraph is null)
        {
            _decodeGraph = CudaGraphExec.Capture(Stream, () =>
            {
                EnqueueLayers(1, StatePointer(0), graphShape: true);
                EnqueueHead(0, 1, _logits.Pointer);
                EnqueueArgmax(StatePointer(0), _history.Pointer, StatePointer(2), StatePointer(1));
            });
        }

        return _decodeGraph;
    }

    /// <summary>Queues every decoder layer for <paramref name="n"/> tokens whose ids are at <paramref name="ids"/>; positions start at state.pos.</summary>
    private void EnqueueLayers(int n, ulong ids, bool graphShape)
    {
        LlamaConfig c = _c;
        int hidden = c.HiddenSize, d = c.HeadDim;
        Stream.Launch(_k.Embed, (n, 1, 1), (256, 1, 1), 0, _engine.Embedding, ids, hidden, _x);
        Mark("embedding");
        // Decode splits the keys into small chunks across CTAs (a graph covers the whole context, idle chunks exit);
        // prefill uses larger chunks, enough for the last token.
        int chunk = n == 1 ? DecodeChunk : PrefillChunk;
        int chunks = graphShape ? CeilDiv(ContextLength, DecodeChunk) : CeilDiv(Position + n, chunk);
        bool bf16 = KvCache == CudaKvCacheFormat.BFloat16;
        ulong pos = StatePointer(1);
        for (int l = 0; l < c.LayerCount; l++)
        {
            DeviceLayer layer = _engine.Layers[l];
            Quantize(n, _x.Pointer, hidden, hidden, layer.Qkv.PaddedBlocks, 1, layer.AttentionNorm.Pointer, 0, layer.QkvTransform);
            Linear(n, layer.Qkv, _qkv.Pointer, _qkvWidth, accumulate: false);
            Mark("linear q|k|v");
            Stream.Launch(bf16 ? _k.RopeKvBf16 : _k.RopeKvF32, (n, CeilDiv((c.HeadCount + c.KeyValueHeadCount) * (d / 2), 256), 1), (256, 1, 1), 0,
                _qkv, _qkvWidth, c.HeadCount, c.KeyValueHeadCount, d, _cos, _sin, pos, ContextLength, _keys[l], _values[l]);
            Mark("rope + kv write");
            if (n == 1 && d <= 128)
            {
                bool small = c.HeadCount / c.KeyValueHeadCount <= 4;
                CudaFunction decode = small ? (bf16 ? _k.AttentionDecodeG4Bf16 : _k.AttentionDecodeG4F32) : (bf16 ? _k.AttentionDecodeBf16 : _k.AttentionDecodeF32);
                Stream.Launch(decode, (c.KeyValueHeadCount, chunks, 1), (256, 1, 1), 0,
                    _qkv, _keys[l], _values[l], ContextLength, d, c.HeadCount, c.KeyValueHeadCount, chunks, pos, _attentionScale, _partO, _partML);
            }
            else
            {
                Stream.Launch(bf16 ? _k.AttentionBf16 : _k.AttentionF32, (c.KeyValueHeadCount, chunks, n), (128, 1, 1), 0,
                    _qkv, _qkvWidth, _keys[l], _values[l], ContextLength, d, c.HeadCount, c.KeyValueHeadCount, chunk, chunks, pos, _attentionScale, _partO, _partML);
            }

            Mark("attention");
            Quantize(n, _partO.Pointer, _qWidth, _qWidth, layer.Output.PaddedBlocks, 3, 0, 0, layer.OutputTransform, chunks, chunk);
            Linear(n, layer.Output, _x.Pointer, hidden, accumulate: true);
            Mark("linear o");
            Quantize(n, _x.Pointer, hidden, hidden, layer.GateUp.PaddedBlocks, 1, layer.MlpNorm.Pointer, 0, layer.GateUpTransform);
            Linear(n, layer.GateUp, _gu.Pointer, _inner2, accumulate: false);
            Mark("linear gate|up");
            Quantize(n, _gu.Pointer, _inner2, c.IntermediateSize, layer.Down.PaddedBlocks, 2, 0, c.IntermediateSize, layer.DownTransform);
            Linear(n, layer.Down, _x.Pointer, hidden, accumulate: true);
            Mark("linear down");
        }
    }

    /// <summary>Final norm and lm_head for <paramref name="rows"/> tokens starting at <paramref name="firstRow"/> of the batch.</summary>
    private void EnqueueHead(int firstRow, int rows, ulong logits)
    {
        int hidden = _c.HiddenSize, vocab = _c.VocabularySize;
        Stream.Launch(_k.RmsNorm, (rows, 1, 1), (256, 1, 1), 0, _x.Pointer + ((ulong)firstRow * (ulong)hidden * 4), hidden, _engine.FinalNorm, _c.RmsNormEpsilon, _normed);
        Mark("final norm");
        if (rows == 1)
        {
            Stream.Launch(_k.GemvBf16, (CeilDiv(vocab, 16), 1, 1), (256, 1, 1), 0, _engine.LmHead, vocab, hidden, _normed, logits);
        }
        else
        {
            Stream.Launch(_k.GemmBf16, (CeilDiv(vocab, 64), CeilDiv(rows, 64), 1), (16, 16, 1), 0, _engine.LmHead, vocab, hidden, _normed, rows, logits);
        }

        Mark("lm_head");
    }

    private void EnqueueArgmax(ulong token, ulong history, ulong step, ulong pos)
    {
        Stream.Launch(_k.ArgmaxPartial, (ArgmaxParts, 1, 1), (256, 1, 1), 0, _logits, _c.VocabularySize, _argValues, _argIndices);
        Stream.Launch(_k.ArgmaxFinal, (1, 1, 1), (128, 1, 1), 0, _argValues, _argIndices, ArgmaxParts, token, history, step, pos);
        Mark("argmax");
    }

    /// <summary>Fused activation quantization; mode 0 plain, 1 RMSNorm, 2 SiLU·mul, 3 attention merge (x = partO, <paramref name="chunks"/> chunks of <paramref name="chunkSize"/> positions).</summary>
    private void Quantize(int n, ulong x, int stride, int width, int paddedBlocks, int mode, ulong gamma, int upOffset, DeviceTransform? t, int chunks = 0, int chunkSize = 1)
    {
        Stream.Launch(_k.Quantize, (CeilDiv(paddedBlocks, 8), n, 1), (256, 1, 1), 0,
            x, stride, width, paddedBlocks, mode, gamma, _c.RmsNormEpsilon, upOffset,
            t?.Matrices, t?.Blocks ?? 0, t is { Shared: true } ? 1 : 0, _engine.ActivationRule, _codes, _exps, n > 1 ? _packedActivations : null,
            _partML, chunks, _c.HeadDim, StatePointer(1), chunkSize);
        Mark(mode switch { 1 => "rmsnorm + quantize", 2 => "silu·mul + quantize", 3 => "attention merge + quantize", _ => "quantize" });
    }

    private void Linear(int n, DeviceLinear w, ulong y, int yStride, bool accumulate)
    {
        if (n == 1)
        {
            _k.LaunchGemv(Stream, _gemv, w.Packed.Pointer, w.Scales.Pointer, w.Rows, w.PaddedBlocks, _codes.Pointer, _exps.Pointer, y, accumulate);
        }
        else if (_packedActivations is not null)
        {
            // Blackwell (compute 12.x): the block-scaled FP4 tensor cores multiply our MXFP4 planes as they are.
            Stream.Launch(_k.GemmMxf4Sm120!.Value, (CeilDiv(w.Rows, 32), CeilDiv(n, 16), 1), (128, 1, 1), 0,
                w.Packed, w.Scales, w.Rows, w.PaddedBlocks, _packedActivations, _exps, n, y, yStride, accumulate ? 1 : 0);
        }
        else
        {
            Stream.Launch(_k.Gemm, (CeilDiv(w.Rows, 128), CeilDiv(n, 64), 1), (256, 1, 1), CudaKernels.GemmSharedBytes,
                w.Packed, w.Scales, w.Rows, w.PaddedBlocks, _codes, _exps, n, y, yStride, accumulate ? 1 : 0);
        }
    }

    /// <summary>
    /// Profiles one decode step at the current position: the step is captured as a graph with an event after every
    /// kernel, replayed, and the GPU time between consecutive events is summed per kernel kind (µs). The position is
    /// not advanced. Also returns the step's time without events.
    /// </summary>
    public (IReadOnlyList<(string Kind, int Launches, double Microseconds)> Kinds, double StepMicroseconds) ProfileDecodeStep(int token, int replays = 20)
    {
        Validate([token]);
        _ctx.MakeCurrent();
        var labels = new List<string>();
        var events = new List<CudaEvent>();
        try
        {
            CudaEvent first = CudaEvent.Create(_ctx);
            events.Add(first);
            CudaGraphExec graph;
            _marker = label =>
            {
                CudaEvent e = CudaEvent.Create(_ctx);
                e.Record(Stream, external: true);
                events.Add(e);
                labels.Add(label);
            };
            try
            {
                graph = CudaGraphExec.Capture(Stream, () =>
                {
                    first.Record(Stream, external: true);
                    EnqueueLayers(1, StatePointer(0), graphShape: true);
                    EnqueueHead(0, 1, _logits.Pointer);
                    EnqueueArgmax(StatePointer(3), 0, 0, 0);
                });
            }
            finally
            {
                _marker = null;
            }

            var sums = new Dictionary<string, (int Count, double Us)>();
            using (graph)
            {
                for (int r = 0; r < replays; r++)
                {
                    SetInt(StatePointer(0), token);
                    SetInt(StatePointer(1), Position);
                    graph.Launch(Stream);
                    Stream.Synchronize();
                    if (r < 2)
                    {
                        continue; // warm-up
                    }

                    for (int i = 0; i < labels.Count; i++)
                    {
                        double us = CudaEvent.ElapsedMilliseconds(events[i], events[i + 1]) * 1000.0;
                        sums[labels[i]] = (sums.GetValueOrDefault(labels[i]).Count + 1, sums.GetValueOrDefault(labels[i]).Us + us);
                    }
                }
            }

            int measured = replays - 2;
            var kinds = sums.Select(kv => (kv.Key, kv.Value.Count / measured, kv.Value.Us / measured)).OrderByDescending(k => k.Item3).ToArray();

            // The plain step (no events): median of graph replays timed with two events.
            CudaGraphExec step = DecodeGraph();
            using CudaEvent start = CudaEvent.Create(_ctx), end = CudaEvent.Create(_ctx);
            var times = new List<double>();
            for (int r = 0; r < replays; r++)
            {
                SetInt(StatePointer(0), token);
                SetInt(StatePointer(1), Position);
                SetInt(StatePointer(2), 0);
                start.Record(Stream);
                step.Launch(Stream);
                end.Record(Stream);
                end.Synchronize();
                times.Add(CudaEvent.ElapsedMilliseconds(start, end) * 1000.0);
            }

            times.Sort();
            return (kinds, times[times.Count / 2]);
        }
        finally
        {
            foreach (CudaEvent e in events)
            {
                e.Dispose();
            }
        }
    }

    // ---- helpers ----------------------------------------------------------------------------------------------

    private void Validate(ReadOnlySpan<int> tokens)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (tokens.Length == 0)
        {
            throw new ArgumentException("At least one token is needed.", nameof(tokens));
        }

        if (Position + tokens.Length > ContextLength)
        {
            throw new ContextOverflowException(Position, tokens.Length, ContextLength);
        }

        foreach (int id in tokens)
        {
            if ((uint)id >= (uint)_c.VocabularySize)
            {
                throw new ArgumentOutOfRangeException(nameof(tokens), id, $"Token id outside the vocabulary [0, {_c.VocabularySize}).");
            }
        }
    }

    private void UploadIds(ReadOnlySpan<int> ids)
    {
        fixed (int* p = ids)
        {
            Stream.CopyToDevice(_ids.Pointer, p, ids.Length * 4L); // pageable source: staged before the call returns
        }
    }

    private void Mark(string kind) => _marker?.Invoke(kind);

    private void SetInt(ulong pointer, int value) => Stream.Launch(_k.SetInt, (1, 1, 1), (1, 1, 1), 0, pointer, value);

    private int ReadState(int index)
    {
        Stream.CopyToHost(_pinned.Pointer, StatePointer(index), 4);
        Stream.Synchronize();
        return _pinned.AsSpan<int>()[0];
    }

    private ulong StatePointer(int index) => _state.Pointer + ((ulong)index * 4);

    private DeviceBuffer Alloc(long bytes) => Own(DeviceBuffer.Allocate(_ctx, bytes));

    private T Own<T>(T item)
        where T : IDisposable
    {
        _owned.Add(item);
        return item;
    }

    private void DisposeOwned()
    {
        for (int i = _owned.Count - 1; i >= 0; i--)
        {
            _owned[i].Dispose();
        }

        _owned.Clear();
    }

    private static int CeilDiv(int a, int b) => (a + b - 1) / b;
}

/// <summary>Layout arithmetic shared by the engine and its tests.</summary>
public static class CudaLayout
{
    /// <summary>32-element blocks of a row of <paramref name="columns"/>, padded to a multiple of 4 (what the kernels read).</summary>
    public static int PaddedBlocks(int columns) => ((columns + 31) / 32 + 3) / 4 * 4;
}
