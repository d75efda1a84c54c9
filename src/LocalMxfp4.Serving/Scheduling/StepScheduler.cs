using LocalMxfp4.Serving.Memory;

namespace LocalMxfp4.Serving.Scheduling;

/// <summary>
/// Chooses what each step runs (continuous batching): the decode token of every running sequence first, then the
/// prefill chunks of running sequences that are still reading their prompt, then newly admitted sequences from the
/// queue, all under one token budget. When KV memory runs out, idle cached prefixes are evicted first (inside the
/// backend), then the most recently admitted running sequence is preempted: its memory is released (what it computed
/// stays cached) and it goes back to the front of the queue, to be recomputed when there is room.
/// </summary>
internal sealed class StepScheduler(ServingOptions options, IStepBackend backend)
{
    /// <summary>Admitted sequences, in admission order.</summary>
    public List<Sequence> Running { get; } = [];

    /// <summary>Preemptions so far.</summary>
    public long Preemptions { get; private set; }

    /// <summary>Fills <paramref name="step"/> with the next step's chunks; <paramref name="admitted"/> gets the sequences admitted for it.</summary>
    public void Schedule(WaitingQueue waiting, List<ScheduledChunk> step, List<Sequence> admitted)
    {
        step.Clear();
        admitted.Clear();
        int budget = options.MaxBatchTokens;
        for (int pass = 0; pass < 2; pass++)
        {
            bool decodes = pass == 0;
            for (int i = 0; i < Running.Count && budget > 0; i++)
            {
                Sequence s = Running[i];
                int need = s.Length - s.Computed;
                if (decodes != (need == 1))
                {
                    continue;
                }

                int count = Math.Min(need, budget);
                if (!Reserve(s, s.Computed + count, waiting, step, ref budget, ref i))
                {
                    continue;
                }

                step.Add(new ScheduledChunk(s, s.Computed, count, s.Computed + count == s.Length));
                budget -= count;
            }
        }

        while (budget > 0 && Running.Count < options.MaxBatchSequences)
        {
            Sequence? next;
            lock (waiting.Gate)
            {
                next = waiting.First;
            }

            if (next is null || !backend.TryAdmit(next))
            {
                return;
            }

            int count = Math.Min(next.Length - next.Computed, budget);
            // Admissions never preempt: a newcomer waits for memory rather than pushing out running work.
            if (!backend.TryReserve(next, next.Computed + count))
            {
                backend.Release(next);
                return;
            }

            lock (waiting.Gate)
            {
                if (!waiting.Remove(next))
                {
                    // Cancelled while being admitted: the cancellation callback already failed it.
                    backend.Release(next);
                    continue;
                }

                next.State = SequenceState.Running;
            }

            next.Epoch++;
            Running.Add(next);
            admitted.Add(next);
            step.Add(new ScheduledChunk(next, next.Computed, count, next.Computed + count == next.Length));
            budget -= count;
        }
    }

    /// <summary>Preempts the most recently admitted running sequence other than <paramref name="keep"/>; false if there is none.</summary>
    private bool PreemptYoungest(Sequence keep, WaitingQueue waiting, List<ScheduledChunk> step, ref int budget, ref int index)
    {
        for (int j = Running.Count - 1; j >= 0; j--)
        {
            Sequence victim = Running[j];
            if (victim == keep)
            {
                continue;
            }

            int scheduled = step.FindIndex(c => c.Sequence == victim);
            if (scheduled >= 0)
            {
                budget += step[scheduled].Count;
                step.RemoveAt(scheduled);
            }

            Running.RemoveAt(j);
            if (j < index)
            {
                index--;
            }

            backend.Release(victim);
            victim.Computed = 0;
            victim.Preemptions++;
            Preemptions++;
            lock (waiting.Gate)
            {
                waiting.AddFirst(victim);
            }

            return true;
        }

        return false;
    }

    private bool Reserve(Sequence s, int positions, WaitingQueue waiting, List<ScheduledChunk> step, ref int budget, ref int index)
    {
        while (!backend.TryReserve(s, positions))
        {
            if (!PreemptYoungest(s, waiting, step, ref budget, ref index))
            {
                // Alone and still short: cannot happen when the pool holds a full context (validated), unless the
                // backend refuses the positions outright; the sequence waits rather than fail.
                return false;
            }
        }

        return true;
    }
}
