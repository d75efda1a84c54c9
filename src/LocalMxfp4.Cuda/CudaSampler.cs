using LocalMxfp4.Engine.Sampling;

namespace LocalMxfp4.Cuda;

/// <summary>
/// Chooses the next token on the GPU from the logits a <see cref="CudaSession"/> left on the device, with the CPU
/// <see cref="Sampler"/>'s semantics: penalties over the last <see cref="SamplingOptions.PenaltyWindow"/> tokens; temperature
/// 0 → argmax (lowest id on ties; identical to <see cref="Sampler.ArgMax"/> on the same logits); otherwise
/// p_i = exp((l_i − max)/T) unnormalised, top-k (k largest, ties to the lower id), then the nucleus (candidates sorted by
/// probability, ties by id, cut at the first prefix reaching top-p of their mass), and one draw r = u · mass with
/// u = <see cref="Random.NextDouble"/> from <c>new Random(seed)</c> — one draw per sampled token, as the CPU sampler.
/// </summary>
/// <remarks>
/// What matches the CPU sampler exactly: the seeded generator and its sequence of uniforms, the penalty arithmetic, the
/// candidate rules and their order, and the greedy choice for equal logits. What can differ: the device's <c>expf</c> and
/// summation order differ from .NET's in the last bits, so a draw that lands within ~1e-7 of a boundary between two
/// candidates, or logits that differ between the engines by float rounding, can pick the neighbouring token.
/// Candidate lists longer than <see cref="CudaKernels.SampleCapacity"/> (very flat distributions with top-p) are sampled
/// on the host from the device logits with the same uniform.
/// </remarks>
public sealed class CudaSampler
{
    private readonly SamplingOptions _options;
    private readonly Random _random;
    private readonly Dictionary<int, int> _counts = [];

    /// <summary>Creates a sampler; the generator is seeded from <see cref="SamplingOptions.Seed"/> exactly as <see cref="Sampler"/> does.</summary>
    public CudaSampler(SamplingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        _random = options.Seed is int seed ? new Random(seed) : new Random();
    }

    /// <summary>Draws the next token from <paramref name="session"/>'s device logits; <paramref name="context"/> is every token so far.</summary>
    public int Sample(CudaSession session, ReadOnlySpan<int> context)
    {
        ArgumentNullException.ThrowIfNull(session);
        ApplyPenalties(session, context);
        if (_options.Temperature == 0)
        {
            return session.ArgMaxOnDevice();
        }

        double u = _random.NextDouble();
        int token = session.SampleOnDevice(_options.Temperature, _options.TopK, _options.TopP, u);
        if (token >= 0)
        {
            return token;
        }

        var logits = new float[session.Engine.Config.VocabularySize];
        session.CopyLogits(logits);
        return HostDraw(logits, _options, u);
    }

    /// <summary>The draw the device performs, on the host (the fallback for long candidate lists, and the tests' reference).</summary>
    public static int HostDraw(ReadOnlySpan<float> logits, SamplingOptions options, double u)
    {
        ArgumentNullException.ThrowIfNull(options);
        int n = logits.Length;
        var p = new float[n];
        float max = float.NegativeInfinity;
        foreach (float v in logits)
        {
            max = MathF.Max(max, v);
        }

        float invT = 1f / options.Temperature;
        for (int i = 0; i < n; i++)
        {
            p[i] = MathF.Exp(MathF.Max((logits[i] - max) * invT, -87f));
        }

        int[] candidates;
        if (options.TopK > 0 && options.TopK < n)
        {
            candidates = Enumerable.Range(0, n).OrderByDescending(i => p[i]).ThenBy(i => i).Take(options.TopK).ToArray();
        }
        else if (options.TopP < 1)
        {
            double total = 0;
            foreach (float v in p)
            {
                total += v;
            }

            float cutoff = 1f;
            while (true)
            {
                cutoff *= 0.25f;
                double mass = 0;
                int count = 0;
                for (int i = 0; i < n; i++)
                {
                    if (p[i] >= cutoff)
                    {
                        mass += p[i];
                        count++;
                    }
                }

                if (mass >= options.TopP * total || cutoff == 0 || count == n)
                {
                    break;
                }
            }

            candidates = Enumerable.Range(0, n).Where(i => p[i] >= cutoff).ToArray();
        }
        else
        {
            double sum = 0;
            foreach (float v in p)
            {
                sum += v;
            }

            double r0 = u * sum, acc0 = 0;
            for (int i = 0; i < n; i++)
            {
                acc0 += p[i];
                if (r0 < acc0)
                {
                    return i;
                }
            }

            return Array.IndexOf(p, p.Max());
        }

        int[] order = candidates.OrderByDescending(i => p[i]).ThenBy(i => i).ToArray();
        double kept = 0;
        foreach (int id in order)
        {
            kept += p[id];
        }

        int cut = order.Length;
        if (options.TopP < 1)
        {
            double sum = kept, cumulative = 0;
            kept = 0;
            for (int i = 0; i < order.Length; i++)
            {
                cumulative += p[order[i]] / sum;
                kept += p[order[i]];
                if (cumulative >= options.TopP)
                {
                    cut = i + 1;
                    break;
                }
            }
        }

        double r = u * kept, acc = 0;
        for (int i = 0; i < cut; i++)
        {
            acc += p[order[i]];
            if (r < acc)
            {
                return order[i];
            }
        }

        return order[cut - 1];
    }

    private void ApplyPenalties(CudaSession session, ReadOnlySpan<int> context)
    {
        if (_options.RepetitionPenalty == 1f && _options.FrequencyPenalty == 0 && _options.PresencePenalty == 0)
        {
            return;
        }

        ReadOnlySpan<int> window = _options.PenaltyWindow > 0 && context.Length > _options.PenaltyWindow ? context[^_options.PenaltyWindow..] : context;
        int vocab = session.Engine.Config.VocabularySize;
        _counts.Clear();
        foreach (int id in window)
        {
            if ((uint)id < (uint)vocab)
            {
                _counts[id] = _counts.GetValueOrDefault(id) + 1;
            }
        }

        int[] ids = [.. _counts.Keys];
        int[] counts = ids.Select(i => _counts[i]).ToArray();
        session.ApplyPenalties(ids, counts, _options.RepetitionPenalty, _options.FrequencyPenalty, _options.PresencePenalty);
    }
}
