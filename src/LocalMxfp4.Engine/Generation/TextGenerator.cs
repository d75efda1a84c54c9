using LocalMxfp4.Engine.Contract;
using LocalMxfp4.Engine.Sampling;
using LocalMxfp4.Tokenization;

namespace LocalMxfp4.Engine.Generation;

/// <summary>
/// Prefill then decode loop over an <see cref="IInferenceSession"/>: samples one token at a time and turns ids into
/// text with a streaming detokenizer, so no step ever yields half a UTF-8 character.
/// </summary>
public sealed class TextGenerator(IInferenceEngine engine, LlmTokenizer tokenizer)
{
    /// <summary>The engine.</summary>
    public IInferenceEngine Engine { get; } = engine ?? throw new ArgumentNullException(nameof(engine));

    /// <summary>The tokenizer.</summary>
    public LlmTokenizer Tokenizer { get; } = tokenizer ?? throw new ArgumentNullException(nameof(tokenizer));

    /// <summary>
    /// Feeds <paramref name="prompt"/> into <paramref name="session"/> (after whatever it already holds) and yields
    /// generated tokens until a stop id, <see cref="GenerationOptions.MaxNewTokens"/>, or a full context. The stop
    /// token is reported with empty text; the last item always carries a <see cref="GenerationFinish"/>.
    /// </summary>
    public IEnumerable<GeneratedToken> Generate(IInferenceSession session, IReadOnlyList<int> prompt, GenerationOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(session);
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(options);
        if (prompt.Count == 0)
        {
            throw new ArgumentException("The prompt needs at least one token (usually BOS).", nameof(prompt));
        }

        return Run(session, prompt, options, cancellationToken);
    }

    private IEnumerable<GeneratedToken> Run(IInferenceSession session, IReadOnlyList<int> prompt, GenerationOptions options, CancellationToken cancellationToken)
    {
        var sampler = new Sampler(options.Sampling);
        var logits = new float[Engine.Config.VocabularySize];
        var context = new List<int>(prompt);
        int[] promptIds = [.. prompt];
        session.Forward(promptIds, logits);
        StreamingDetokenizer detokenizer = Tokenizer.CreateStreamingDetokenizer();
        var stops = options.StopTokenIds as ISet<int> ?? new HashSet<int>(options.StopTokenIds);

        for (int produced = 0; ; produced++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (produced >= options.MaxNewTokens)
            {
                yield return new GeneratedToken(-1, detokenizer.Flush(), GenerationFinish.Length);
                yield break;
            }

            int next = sampler.Sample(logits, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(context));
            if (stops.Contains(next))
            {
                yield return new GeneratedToken(next, detokenizer.Flush(), GenerationFinish.Stop);
                yield break;
            }

            context.Add(next);
            bool full = session.Position >= session.ContextLength;
            bool last = full || produced + 1 >= options.MaxNewTokens;
            string text = detokenizer.Append(next);
            if (last)
            {
                yield return new GeneratedToken(next, text + detokenizer.Flush(), full ? GenerationFinish.ContextFull : GenerationFinish.Length);
                yield break;
            }

            yield return new GeneratedToken(next, text, null);
            session.Forward([next], logits);
        }
    }
}
