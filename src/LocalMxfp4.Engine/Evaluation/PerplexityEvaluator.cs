using LocalMxfp4.Engine.Contract;
using LocalMxfp4.Tokenization;

namespace LocalMxfp4.Engine.Evaluation;

/// <summary>The outcome of a perplexity evaluation.</summary>
/// <param name="Tokens">Tokens in the evaluated windows.</param>
/// <param name="Windows">Windows scored.</param>
/// <param name="ContextLength">Window length.</param>
/// <param name="MeanNll">Mean negative log-likelihood per predicted token, in nats.</param>
public sealed record PerplexityResult(long Tokens, int Windows, int ContextLength, double MeanNll)
{
    /// <summary>exp(mean NLL).</summary>
    public double Perplexity => Math.Exp(MeanNll);
}

/// <summary>
/// Perplexity by the project's protocol: the text is tokenized once (each document with BOS prepended, documents
/// concatenated), cut into non-overlapping windows of the context length (the tail is dropped), and the mean NLL is
/// taken over every predicted position of every window (length − 1 per window). Logits are produced in chunks so a
/// 128k vocabulary never needs a <c>[window, vocab]</c> buffer.
/// </summary>
public static class PerplexityEvaluator
{
    private const int Chunk = 64;

    /// <summary>Scores <paramref name="documents"/> with <paramref name="engine"/>.</summary>
    public static PerplexityResult Evaluate(IInferenceEngine engine, LlmTokenizer tokenizer, IReadOnlyList<string> documents, int contextLength, int maxWindows = 0, IProgress<(int Done, int Total)>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(engine);
        int? bos = engine.Config.BosTokenId ?? tokenizer.BeginOfSequenceId;
        int[] stream = TextCorpus.TokenStream(documents, tokenizer, bos);
        return Evaluate(engine, stream, contextLength, maxWindows, progress, cancellationToken);
    }

    /// <summary>Scores an already tokenized stream.</summary>
    public static PerplexityResult Evaluate(IInferenceEngine engine, int[] stream, int contextLength, int maxWindows = 0, IProgress<(int Done, int Total)>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentNullException.ThrowIfNull(stream);
        if (contextLength < 2 || contextLength > engine.Config.MaxPositions)
        {
            throw new ArgumentOutOfRangeException(nameof(contextLength), contextLength, $"The window must be between 2 and the model's {engine.Config.MaxPositions} positions.");
        }

        int windows = stream.Length / contextLength;
        if (maxWindows > 0)
        {
            windows = Math.Min(windows, maxWindows);
        }

        if (windows == 0)
        {
            throw new ArgumentException($"The text has {stream.Length} tokens, fewer than one window of {contextLength}.", nameof(stream));
        }

        int vocab = engine.Config.VocabularySize;
        var logits = new float[Chunk * vocab];
        double total = 0;
        using IInferenceSession session = engine.CreateSession(contextLength);
        for (int w = 0; w < windows; w++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            progress?.Report((w, windows));
            session.Rewind(0);
            ReadOnlySpan<int> window = stream.AsSpan(w * contextLength, contextLength);
            for (int start = 0; start < contextLength; start += Chunk)
            {
                int n = Math.Min(Chunk, contextLength - start);
                session.ForwardAll(window.Slice(start, n), logits);
                for (int t = 0; t < n; t++)
                {
                    int position = start + t;
                    if (position + 1 < contextLength)
                    {
                        total += Nll(logits.AsSpan(t * vocab, vocab), window[position + 1]);
                    }
                }
            }
        }

        progress?.Report((windows, windows));
        return new PerplexityResult((long)windows * contextLength, windows, contextLength, total / ((long)windows * (contextLength - 1)));
    }

    /// <summary><c>logsumexp(logits) − logits[target]</c> in float64.</summary>
    public static double Nll(ReadOnlySpan<float> logits, int target)
    {
        float max = System.Numerics.Tensors.TensorPrimitives.Max(logits);
        double sum = 0;
        foreach (float v in logits)
        {
            sum += Math.Exp(v - max);
        }

        return max + Math.Log(sum) - logits[target];
    }
}
