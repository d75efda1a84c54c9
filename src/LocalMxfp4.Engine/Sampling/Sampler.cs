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
    public int Sample(Span<float> logits, ReadOnlySpan<int> context)
    {
        ApplyPenalties(logits, context);
        if (_options.Temperature == 0)
        {
            return ArgMax(logits);
        }

        int vocab = logits.Length;
        if (_order.Length != vocab)
        {
            _order = new int[vocab];
            _probabilities = new float[vocab];
        }

        for (int i = 0; i < vocab; i++)
        {
            _order[i] = i;
        }

        // Sort candidates by logit, descending, ties by id so the order never depends on the sort's stability.
        float[] keys = logits.ToArray();
        Array.Sort(_order, (a, b) => keys[b] != keys[a] ? keys[b].CompareTo(keys[a]) : a.CompareTo(b));
        int kept = _options.TopK > 0 ? Math.Min(_options.TopK, vocab) : vocab;

        double max = keys[_order[0]];
        double sum = 0;
        for (int i = 0; i < kept; i++)
        {
            double p = Math.Exp((keys[_order[i]] - max) / _options.Temperature);
            _probabilities[i] = (float)p;
            sum += p;
        }

        if (_options.TopP < 1)
        {
            double cumulative = 0;
            int cut = kept;
            for (int i = 0; i < kept; i++)
            {
                cumulative += _probabilities[i] / sum;
                if (cumulative >= _options.TopP)
                {
                    cut = i + 1;
                    break;
                }
            }

            sum = 0;
            for (int i = 0; i < cut; i++)
            {
                sum += _probabilities[i];
            }

            kept = cut;
        }

        double r = _random.NextDouble() * sum;
        double acc = 0;
        for (int i = 0; i < kept; i++)
        {
            acc += _probabilities[i];
            if (r < acc)
            {
                return _order[i];
            }
        }

        return _order[kept - 1];
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
