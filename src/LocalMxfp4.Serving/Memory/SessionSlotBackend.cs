using LocalMxfp4.Engine.Contract;
using LocalMxfp4.Serving.Scheduling;

namespace LocalMxfp4.Serving.Memory;

/// <summary>
/// KV memory for an engine without batched steps (today the CUDA engine): one <see cref="IInferenceSession"/> per batch
/// slot, each with a whole context, run one after the other within a step. A slot keeps what its last sequence
/// computed, and a new sequence takes the free slot sharing its longest prefix and rewinds it there (llama.cpp
/// server's slots with prompt caching).
/// </summary>
internal sealed class SessionSlotBackend : IStepBackend
{
    private readonly IInferenceEngine _engine;
    private readonly int _contextLength;
    private readonly Slot[] _slots;
    private float[] _scratch = [];

    public SessionSlotBackend(IInferenceEngine engine, ServingOptions options)
    {
        _engine = engine;
        _contextLength = options.ContextLength;
        _slots = new Slot[options.MaxBatchSequences];
        for (int i = 0; i < _slots.Length; i++)
        {
            _slots[i] = new Slot();
        }
    }

    public KvMemoryStatistics Statistics
    {
        get
        {
            int busy = _slots.Count(s => s.Busy), idle = _slots.Count(s => !s.Busy && s.Length > 0);
            return new KvMemoryStatistics(_contextLength, _slots.Length, busy, idle, _slots.Length - busy - idle, 0, 0);
        }
    }

    public bool TryAdmit(Sequence sequence)
    {
        Slot? best = null;
        int bestShared = -1;
        ReadOnlySpan<int> tokens = sequence.Tokens;
        foreach (Slot slot in _slots)
        {
            if (slot.Busy)
            {
                continue;
            }

            // At least the last token runs again, so the step has logits to sample from.
            int shared = tokens[..^1].CommonPrefixLength(slot.Tokens.AsSpan(0, slot.Length));
            if (shared > bestShared)
            {
                best = slot;
                bestShared = shared;
            }
        }

        if (best is null)
        {
            return false;
        }

        try
        {
            best.Session ??= _engine.CreateSession(_contextLength);
            best.Session.Rewind(Math.Min(bestShared, best.Session.Position));
        }
        catch
        {
            best.Session?.Dispose();
            best.Session = null;
            best.Length = 0;
            throw;
        }

        best.Length = best.Session.Position;
        best.Busy = true;
        sequence.Memory = best;
        sequence.Computed = best.Length;
        return true;
    }

    public bool TryReserve(Sequence sequence, int positions) => positions <= _contextLength;

    public void OnComputed(Sequence sequence)
    {
        var slot = (Slot)sequence.Memory!;
        if (slot.Tokens.Length < sequence.Computed)
        {
            Array.Resize(ref slot.Tokens, Math.Max(sequence.Computed, slot.Tokens.Length * 2));
        }

        sequence.Tokens[slot.Length..sequence.Computed].CopyTo(slot.Tokens.AsSpan(slot.Length));
        slot.Length = sequence.Computed;
    }

    public void Release(Sequence sequence)
    {
        if (sequence.Memory is Slot slot)
        {
            slot.Busy = false;
            sequence.Memory = null;
        }
    }

    public void Run(IReadOnlyList<ScheduledChunk> chunks, Span<float> logits)
    {
        int vocab = _engine.Config.VocabularySize;
        int row = 0;
        foreach (ScheduledChunk c in chunks)
        {
            var slot = (Slot)c.Sequence.Memory!;
            IInferenceSession session = slot.Session!;
            if (session.Position != c.Start)
            {
                // A failed step left the session elsewhere; nothing it holds beyond the start can be trusted.
                session.Rewind(Math.Min(session.Position, c.Start));
                if (session.Position != c.Start)
                {
                    throw new InvalidOperationException($"Slot session is at position {session.Position}, the step starts at {c.Start}.");
                }
            }

            Span<float> destination;
            if (c.WantsLogits)
            {
                destination = logits.Slice(row * vocab, vocab);
                row++;
            }
            else
            {
                if (_scratch.Length < vocab)
                {
                    _scratch = new float[vocab];
                }

                destination = _scratch;
            }

            try
            {
                session.Forward(c.Sequence.TokenMemory(c.Start, c.Count).Span, destination);
            }
            catch
            {
                // Where the session stands after a failed pass is unknown: start the slot over.
                slot.Length = 0;
                session.Rewind(0);
                throw;
            }
        }
    }

    public void Dispose()
    {
        foreach (Slot slot in _slots)
        {
            slot.Session?.Dispose();
            slot.Session = null;
        }
    }

    private sealed class Slot
    {
        public IInferenceSession? Session;
        public int[] Tokens = new int[64];
        public int Length;
        public bool Busy;
    }
}
