using System.Buffers.Text;
using Microsoft.ML.Tokenizers;

namespace LocalMxfp4.Tokenization;

/// <summary>Loads tiktoken-format vocabularies ("base64(bytes) rank" lines).</summary>
internal static class TiktokenLoader
{
    // Far above any real vocabulary; stops a corrupt rank from allocating gigabytes.
    internal const int MaxRank = 1 << 24;

    public static LlmTokenizer Load(string path, IReadOnlyDictionary<string, int>? specialTokens, string? pattern)
    {
        byte[] data = TokenizerFiles.ReadAllBytes(path);
        byte[]?[] tokens = Parse(data, path);
        int baseSize = tokens.Length;

        string? directory = Path.GetDirectoryName(Path.GetFullPath(path));
        string? parent = directory is not null && Path.GetFileName(directory) == "original" ? Path.GetDirectoryName(directory) : null;
        TokenizerConfig? config = TokenizerConfig.TryLoad(directory, parent);

        var names = new Dictionary<int, string>();
        if (specialTokens is not null)
        {
            foreach (var (name, id) in specialTokens)
            {
                names[id] = name;
            }
        }
        else
        {
            string[] defaults = Llama3Defaults.SpecialNames();
            for (int i = 0; i < defaults.Length; i++)
            {
                names[baseSize + i] = defaults[i];
            }

            if (config is not null)
            {
                foreach (var (id, (content, special)) in config.AddedTokens)
                {
                    if (special || id >= baseSize)
                    {
                        names[id] = content;
                    }
                }
            }
        }

        foreach (int id in names.Keys)
        {
            if (id < 0)
            {
                throw new TokenizerLoadException($"special token id {id} is negative.", path);
            }
        }

        SpecialTokenSet specials = SpecialTokenSet.Create(names);
        var preTokenizer = new RegexPreTokenizer(Llama3Defaults.RegexFor(pattern ?? Llama3Defaults.Pattern), specialTokens: null);
        TiktokenTokenizer inner;
        try
        {
            // Specials are registered so that InnerTokenizer.Decode can render them, but the pre-tokenizer above
            // knows none of them, so no pre-token can ever be a whole special string and encoding stays plain-text.
            inner = TiktokenTokenizer.Create(new MemoryStream(data, writable: false), preTokenizer, normalizer: null,
                specialTokens: specials.ByName);
        }
        catch (Exception ex) when (ex is not TokenizerLoadException)
        {
            throw new TokenizerLoadException($"Microsoft.ML.Tokenizers rejected the vocabulary: {ex.Message}", path, innerException: ex);
        }

        var kinds = new TokenKind[baseSize];
        TokenTable table = TokenTable.Build(tokens, kinds, specials.ById);
        return new LlmTokenizer(TokenizerKind.Tiktoken, path, inner, table, specials, config, defaultBos: null, defaultEos: [],
            stripLeadingSpace: false);
    }

    /// <summary>Parses and validates every line; the result is indexed by rank.</summary>
    private static byte[]?[] Parse(byte[] data, string path)
    {
        var entries = new List<(int Rank, byte[] Bytes, int Line)>(131072);
        var buffer = new byte[256];
        int maxRank = -1;
        int lineNumber = 0;
        int pos = 0;
        while (pos < data.Length)
        {
            int newline = data.AsSpan(pos).IndexOf((byte)'\n');
            int end = newline < 0 ? data.Length : pos + newline;
            ReadOnlySpan<byte> line = data.AsSpan(pos, end - pos).TrimEnd((byte)'\r');
            pos = end + 1;
            lineNumber++;
            if (line.IsEmpty)
            {
                continue;
            }

            int space = line.IndexOf((byte)' ');
            if (space <= 0 || space == line.Length - 1 || line[(space + 1)..].Contains((byte)' '))
            {
                throw new TokenizerLoadException("expected '<base64 token> <rank>'.", path, lineNumber);
            }

            ReadOnlySpan<byte> base64 = line[..space];
            int maxDecoded = Base64.GetMaxDecodedFromUtf8Length(base64.Length);
            if (buffer.Length < maxDecoded)
            {
                buffer = new byte[maxDecoded];
            }

            if (Base64.DecodeFromUtf8(base64, buffer, out _, out int written) != System.Buffers.OperationStatus.Done || written == 0)
            {
                throw new TokenizerLoadException("invalid base64 token.", path, lineNumber);
            }

            ReadOnlySpan<byte> rankText = line[(space + 1)..];
            if (!Utf8Parser.TryParse(rankText, out int rank, out int consumed) || consumed != rankText.Length
                || rank < 0 || !char.IsAsciiDigit((char)rankText[0]))
            {
                throw new TokenizerLoadException("rank is not a non-negative integer.", path, lineNumber);
            }

            if (rank >= MaxRank)
            {
                throw new TokenizerLoadException($"rank {rank} is implausibly large.", path, lineNumber);
            }

            entries.Add((rank, buffer.AsSpan(0, written).ToArray(), lineNumber));
            maxRank = Math.Max(maxRank, rank);
        }

        if (entries.Count == 0)
        {
            throw new TokenizerLoadException("the vocabulary is empty.", path);
        }

        var tokens = new byte[]?[maxRank + 1];
        foreach (var (rank, bytes, line) in entries)
        {
            if (tokens[rank] is not null)
            {
                throw new TokenizerLoadException($"rank {rank} appears twice.", path, line);
            }

            tokens[rank] = bytes;
        }

        return tokens;
    }
}
