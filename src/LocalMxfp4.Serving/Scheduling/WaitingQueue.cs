namespace LocalMxfp4.Serving.Scheduling;

/// <summary>
/// Sequences waiting for admission, first come first served; preempted sequences go back to the front. Guarded by
/// its own lock: submitters and cancellation callbacks touch it from any thread, the loop from its own.
/// </summary>
internal sealed class WaitingQueue
{
    private readonly LinkedList<Sequence> _list = new();

    public object Gate { get; } = new();

    /// <summary>Waiting sequences (callers hold <see cref="Gate"/> or accept a racy read).</summary>
    public int Count => _list.Count;

    public void AddLast(Sequence sequence)
    {
        sequence.State = SequenceState.Waiting;
        sequence.WaitingNode = _list.AddLast(sequence);
    }

    public void AddFirst(Sequence sequence)
    {
        sequence.State = SequenceState.Waiting;
        sequence.WaitingNode = _list.AddFirst(sequence);
    }

    public Sequence? First => _list.First?.Value;

    /// <summary>Removes <paramref name="sequence"/> if it is waiting; false if it already left.</summary>
    public bool Remove(Sequence sequence)
    {
        if (sequence.WaitingNode is not { } node || node.List is null)
        {
            return false;
        }

        _list.Remove(node);
        sequence.WaitingNode = null;
        return true;
    }

    /// <summary>Empties the queue, returning what was in it.</summary>
    public List<Sequence> Drain()
    {
        List<Sequence> all = [.. _list];
        foreach (Sequence s in all)
        {
            s.WaitingNode = null;
        }

        _list.Clear();
        return all;
    }
}
