using System.Runtime.InteropServices;
using LocalMxfp4.Engine.Sampling;

namespace LocalMxfp4.Serving.Generation;

/// <summary>
/// The one rule that turns a sequence's logits into its next token, for every front end (chat client, <c>lmx
/// generate</c>, servers): the logits processor masks forbidden tokens, the sampler applies the penalties over the reply
/// so far (never the prompt) and draws, and a masked token that the sampler's exp(−87) floor let through is replaced by
/// the best allowed one.
/// </summary>
public sealed class TokenSelector
{
    private readonly Sampler _sampler;
    private readonly ILogitsProcessor? _processor;
    private readonly List<int> _reply = [];

    /// <summary>Creates the selector of one sequence (its own seeded generator).</summary>
    public TokenSelector(SamplingOptions sampling, ILogitsProcessor? processor)
    {
        ArgumentNullException.ThrowIfNull(sampling);
        _sampler = new Sampler(sampling);
        _processor = processor;
    }

    /// <summary>Tokens chosen so far that the penalties look at (stop tokens are not added).</summary>
    public IReadOnlyList<int> Reply => _reply;

    /// <summary>Chooses the next token; <paramref name="logits"/> is modified.</summary>
    /// <exception cref="NonFiniteLogitsException">The logits hold NaN or infinity.</exception>
    public int Select(Span<float> logits)
    {
        _processor?.Apply(logits);
        int next = _sampler.Sample(logits, CollectionsMarshal.AsSpan(_reply));
        if (_processor is not null)
        {
            if (!_processor.IsAllowed(next))
            {
                next = Sampler.ArgMax(logits);
            }

            _processor.Accept(next);
        }

        return next;
    }

    /// <summary>Records <paramref name="token"/> as part of the reply (the penalties' context).</summary>
    public void Append(int token) => _reply.Add(token);
}
