namespace LocalMxfp4.Engine.Sampling;

/// <summary>Chooses tokens from logits under <see cref="SamplingOptions"/>. One instance per generation: it owns the seeded generator.</summary>
public sealed class Sampler
{
    private readonly SamplingOptions _options;
    private readonly Random _random;
    private readonly Dictionary<int, int> _counts = [];
    private int[] _order = [];
    private float[] _probabilities = [];

    /// <summary>Creates a sampler; the generator is seeded from <see cref="SamplingOptions.Seed"/>.</summary>
    public Sampler(SamplingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        // Random(int) is the documented-stable seeded algorithm: the same seed gives the same draws on every run.
        _random = options.Seed is int seed ? new Random(seed) : new Random();
    }

    /// <summary>
    /// Picks the next token. <paramref name="logits"/> is modified (penalties, temperature);
    /// <paramref name="context"/> is every token so far (prompt and generated).
    /// </summary>
    /// <remarks>
    /// Only what the options need is sorted: top-k selects k candidates; top-p sorts just the tokens above a
    /// probability cutoff that is lowered until they hold the nucleus mass (so the nucleus is exactly a prefix of
    /// them); with neither, the draw scans the vocabulary in id order. A 128k vocabulary is never fully sorted.
    /// </remarks>
    public int Sample(Span<float> logits, ReadOnlySpan<int> context)
    {
        // NaN or ±Inf logits (a broken checkpoint, or W4A4 meeting a non-finite activation) have no distribution to
        // sample; picking "token 0" would hide the fault.
        float largest = System.Numerics.Tensors.TensorPrimitives.Max(logits);
        if (!float.IsFinite(largest) || float.IsNaN(System.Numerics.Tensors.TensorPrimitives.Min(logits)))
        {
            throw new NonFiniteLogitsException();
        }

        ApplyPenalties(logits, context);
        if (_options.Temperature == 0)
        {
            return ArgMax(logits);
        }

        int vocab = logits.Length;
        if (_probabilities.Length != vocab)
        {
            _probabilities = new float[vocab];
            _order = new int[vocab];
        }

        // p_i ∝ exp((l_i − max) / T), unnormalised.
        Span<float> p = _probabilities;
        float max = System.Numerics.Tensors.TensorPrimitives.Max(logits);
        System.Numerics.Tensors.TensorPrimitives.Subtract(logits, max, p);
        System.Numerics.Tensors.TensorPrimitives.Multiply(p, 1f / _options.Temperature, p);
        System.Numerics.Tensors.TensorPrimitives.Max(p, -87f, p);
        System.Numerics.Tensors.TensorPrimitives.Exp(p, p);

        int count;
        if (_options.TopK > 0 && _options.TopK < vocab)
        {
            count = SelectTop(p, _options.TopK);
        }
        else if (_options.TopP < 1)
        {
            count = SelectAboveNucleusCutoff(p, _options.TopP);
        }
        else
        {
            return Draw(p);
        }

        // Sort the candidates by probability, descending (ties by id, so the order is fully determined).
        int[] order = _order;
        float[] probs = _probabilities;
        Array.Sort(order, 0, count, Comparer<int>.Create((a, b) => probs[b] != probs[a] ? probs[b].CompareTo(probs[a]) : a.CompareTo(b)));
        double sum = 0;
        for (int i = 0; i < count; i++)
        {
            sum += probs[order[i]];
        }

        if (_options.TopP < 1)
        {
            double cumulative = 0, kept = 0;
            int cut = count;
            for (int i = 0; i < count; i++)
            {
                cumulative += probs[order[i]] / sum;
                kept += probs[order[i]];
                if (cumulative >= _options.TopP)
                {
                    cut = i + 1;
                    break;
                }
            }

            count = cut;
            sum = kept;
        }

        double r = _random.NextDouble() * sum;
        double acc = 0;
        for (int i = 0; i < count; i++)
        {
            acc += probs[order[i]];
            if (r < acc)
            {
                return order[i];
            }
        }

        return order[count - 1];
    }

    /// <summary>The index of the largest logit; the lowest index wins ties.</summary>
    public static int ArgMax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        float bestValue = float.NegativeInfinity;
        for (int i = 0; i < logits.Length; i++)
        {
            if (logits[i] > bestValue)
            {
                bestValue = logits[i];
                best = i;
            }
        }

        return best;
    }

    /// <summary>Draws from the whole distribution, scanning ids in order.</summary>
    private int Draw(ReadOnlySpan<float> p)
    {
        double sum = 0;
        foreach (float v in p)
        {
            sum += v;
        }

        double r = _random.NextDouble() * sum, acc = 0;
        for (int i = 0; i < p.Length; i++)
        {
            acc += p[i];
            if (r < acc)
            {
                return i;
            }
        }

        return System.Numerics.Tensors.TensorPrimitives.IndexOfMax(p);
    }

    /// <summary>Puts the ids of the k largest probabilities (ties: lower id) in <c>_order[0..k)</c>.</summary>
    private int SelectTop(ReadOnlySpan<float> p, int k)
    {
        // A min-heap of the best k seen so far: O(V log k).
        var heap = new PriorityQueue<int, (float P, int NegId)>(k + 1);
        for (int i = 0; i < p.Length; i++)
        {
            if (heap.Count < k)
            {
                heap.Enqueue(i, (p[i], -i));
            }
            else
            {
                heap.TryPeek(out _, out (float P, int NegId) worst);
                if (p[i] > worst.P)
                {
                    heap.EnqueueDequeue(i, (p[i], -i));
                }
            }
        }

        int n = 0;
        while (heap.TryDequeue(out int id, out _))
        {
            _order[n++] = id;
        }

        return n;
    }

    /// <summary>
    /// Puts in <c>_order</c> every id whose probability is at least a cutoff low enough that they hold ≥ <paramref name="topP"/>
    /// of the mass: every nucleus member is then among them, since all larger probabilities are.
    /// </summary>
    private int SelectAboveNucleusCutoff(ReadOnlySpan<float> p, float topP)
    {
        double total = 0;
        foreach (float v in p)
        {
            total += v;
        }

        float cutoff = System.Numerics.Tensors.TensorPrimitives.Max(p);
        while (true)
        {
            cutoff *= 0.25f;
            int n = 0;
            double mass = 0;
            for (int i = 0; i < p.Length; i++)
            {
                if (p[i] >= cutoff)
                {
                    _order[n++] = i;
                    mass += p[i];
                }
            }

            if (mass >= topP * total || !(cutoff > 0) || n == p.Length)
            {
                return n;
            }
        }
    }

    private void ApplyPenalties(Span<float> logits, ReadOnlySpan<int> context)
    {
        bool repetition = _options.RepetitionPenalty != 1f;
        if (!repetition && _options.FrequencyPenalty == 0 && _options.PresencePenalty == 0)
        {
            return;
        }

        ReadOnlySpan<int> window = _options.PenaltyWindow > 0 && context.Length > _options.PenaltyWindow
            ? context[^_options.PenaltyWindow..]
            : context;
        _counts.Clear();
        foreach (int id in window)
        {
            if ((uint)id < (uint)logits.Length)
            {
                _counts[id] = _counts.GetValueOrDefault(id) + 1;
            }
        }

        foreach ((int id, int count) in _counts)
        {
            float v = logits[id];
            if (repetition)
            {
                v = v > 0 ? v / _options.RepetitionPenalty : v * _options.RepetitionPenalty;
            }

            logits[id] = v - (count * _options.FrequencyPenalty) - _options.PresencePenalty;
        }
    }
}

/// <summary>The model produced NaN or infinite logits, so there is nothing to sample from.</summary>
public sealed class NonFiniteLogitsException()
    : InvalidOperationException("The model produced non-finite logits (NaN or ±Inf): the weights or an activation overflowed; no token can be sampled.");
