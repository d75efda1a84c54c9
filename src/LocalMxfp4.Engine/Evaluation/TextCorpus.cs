using System.Text.Json;
using LocalMxfp4.Tokenization;

namespace LocalMxfp4.Engine.Evaluation;

/// <summary>
/// Calibration and evaluation text: a JSONL file (<c>{"text": …}</c> per line, like C4), a text file of documents
/// separated by lines <c>&lt;|endoftext|&gt;</c> (like TinyStories), or plain text (one document, like WikiText).
/// </summary>
public static class TextCorpus
{
    /// <summary>The document separator line of TinyStories-style files.</summary>
    public const string DocumentSeparator = "<|endoftext|>";

    /// <summary>Reads the documents of <paramref name="path"/>.</summary>
    public static IReadOnlyList<string> LoadDocuments(string path)
    {
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"Text file not found: {path}", path);
        }

        if (path.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase))
        {
            var docs = new List<string>();
            int lineNumber = 0;
            foreach (string line in File.ReadLines(path))
            {
                lineNumber++;
                if (string.IsNullOrWhiteSpace(line))
                {
                    continue;
                }

                try
                {
                    using JsonDocument doc = JsonDocument.Parse(line);
                    if (doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("text", out JsonElement text) && text.ValueKind == JsonValueKind.String)
                    {
                        docs.Add(text.GetString()!);
                        continue;
                    }
                }
                catch (JsonException e)
                {
                    throw new InvalidDataException($"{path}:{lineNumber}: not valid JSON ({e.Message}).", e);
                }

                throw new InvalidDataException($"{path}:{lineNumber}: expected an object with a string field \"text\".");
            }

            return docs;
        }

        string all = File.ReadAllText(path);
        if (all.Contains('\n' + DocumentSeparator, StringComparison.Ordinal) || all.StartsWith(DocumentSeparator, StringComparison.Ordinal))
        {
            return all.Split(DocumentSeparator)
                .Select(d => d.Trim('\n', '\r'))
                .Where(d => d.Length > 0)
                .ToArray();
        }

        return [all];
    }

    /// <summary>
    /// Tokenizes documents (each with BOS prepended when the model has one) into one stream, stopping once it holds
    /// <paramref name="enoughTokens"/> tokens (0 = all).
    /// </summary>
    public static int[] TokenStream(IReadOnlyList<string> documents, LlmTokenizer tokenizer, int? bos, long enoughTokens = 0)
    {
        ArgumentNullException.ThrowIfNull(documents);
        ArgumentNullException.ThrowIfNull(tokenizer);
        var stream = new List<int>();
        foreach (string doc in documents)
        {
            if (bos is int b)
            {
                stream.Add(b);
            }

            stream.AddRange(tokenizer.Encode(doc));
            if (enoughTokens > 0 && stream.Count >= enoughTokens)
            {
                break;
            }
        }

        return [.. stream];
    }

    /// <summary><paramref name="count"/> windows of <paramref name="length"/> tokens at seeded random offsets of <paramref name="stream"/>.</summary>
    public static int[][] SampleWindows(int[] stream, int count, int length, int seed)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        if (stream.Length < length)
        {
            throw new ArgumentException($"The calibration text has {stream.Length} tokens, fewer than one window of {length}.", nameof(stream));
        }

        var rng = new Random(seed);
        var windows = new int[count][];
        for (int i = 0; i < count; i++)
        {
            int start = rng.Next(stream.Length - length + 1);
            windows[i] = stream.AsSpan(start, length).ToArray();
        }

        return windows;
    }
}
