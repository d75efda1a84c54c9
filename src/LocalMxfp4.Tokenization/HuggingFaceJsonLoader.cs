using System.Text.Json;
using Microsoft.ML.Tokenizers;

namespace LocalMxfp4.Tokenization;

/// <summary>
/// Loads byte-level BPE <c>tokenizer.json</c> files. The 9 MB LLaMA-3 file is read with a forward-only
/// <see cref="Utf8JsonReader"/> so that vocabulary and merges go straight into the lists the BPE model needs.
/// </summary>
internal static class HuggingFaceJsonLoader
{
    private sealed class Parsed
    {
        public string? ModelType;
        public List<KeyValuePair<string, int>>? Vocab;
        public List<string>? Merges;
        public bool ByteFallback;
        public bool IgnoreMerges;
        public string? SubwordAffix;
        public List<(int Id, string Content, bool Special)> AddedTokens { get; } = [];
        public string? NormalizerType;
        public string? SplitPattern;
        public int SplitCount;
        public bool ByteLevel;
        public bool ByteLevelUsesRegex;
    }

    public static LlmTokenizer Load(string path)
    {
        byte[] json = TokenizerFiles.ReadAllBytes(path);
        Parsed parsed;
        try
        {
            parsed = Parse(json, path);
        }
        catch (JsonException ex)
        {
            int? line = ex.LineNumber is long l ? (int)l + 1 : null;
            throw new TokenizerLoadException($"malformed tokenizer.json: {ex.Message}", path, line, ex);
        }
        catch (InvalidOperationException ex)
        {
            // Utf8JsonReader throws this when a value has an unexpected type (e.g. a string where a number belongs).
            throw new TokenizerLoadException($"malformed tokenizer.json: {ex.Message}", path, innerException: ex);
        }

        string pattern = Validate(parsed, path);
        List<KeyValuePair<string, int>> vocab = parsed.Vocab!;

        int baseSize = 0;
        foreach (var (_, id) in vocab)
        {
            if (id < 0 || id >= TiktokenLoader.MaxRank)
            {
                // Ids size the token table, so an absurd id would be an absurd allocation.
                throw new TokenizerLoadException($"vocabulary id {id} is outside [0, {TiktokenLoader.MaxRank}).", path);
            }

            baseSize = Math.Max(baseSize, id + 1);
        }

        var bytes = new byte[]?[baseSize];
        foreach (var (token, id) in vocab)
        {
            bytes[id] = ByteLevelMapping.ToBytes(token)
                ?? throw new TokenizerLoadException($"vocabulary entry {id} ('{token}') is not byte-level encoded.", path);
        }

        string? directory = Path.GetDirectoryName(Path.GetFullPath(path));
        TokenizerConfig? config = TokenizerConfig.TryLoad(directory);
        var names = new Dictionary<int, string>();
        var addedText = new Dictionary<int, string>();
        foreach (var (id, content, special) in parsed.AddedTokens)
        {
            AddAdded(id, content, special);
        }

        if (config is not null)
        {
            foreach (var (id, (content, special)) in config.AddedTokens)
            {
                AddAdded(id, content, special);
            }
        }

        void AddAdded(int id, string content, bool special)
        {
            if (id < 0)
            {
                throw new TokenizerLoadException($"added token id {id} is negative.", path);
            }

            if (special)
            {
                names[id] = content;
                addedText.Remove(id);
            }
            else if (id >= baseSize || bytes[id] is null)
            {
                addedText[id] = content;
                names.Remove(id);
            }
        }

        SpecialTokenSet specials = SpecialTokenSet.Create(names);
        BpeTokenizer inner;
        // The pre-tokenizer knows no specials, so special strings in user text stay plain text.
        var preTokenizer = new RegexPreTokenizer(Llama3Defaults.RegexFor(pattern), specialTokens: null);
        try
        {
            inner = BpeTokenizer.Create(new BpeOptions(vocab)
            {
                Merges = parsed.Merges,
                PreTokenizer = preTokenizer,
                ByteLevel = true,
                SpecialTokens = specials.ByName,
            });
        }
        catch (Exception ex) when (ex is not TokenizerLoadException)
        {
            throw new TokenizerLoadException($"Microsoft.ML.Tokenizers rejected the BPE model: {ex.Message}", path, innerException: ex);
        }

        TokenTable table = TokenTable.Build(bytes, new TokenKind[baseSize], specials.ById, addedText);
        WholeWordFirstEncoder? encoder = parsed.IgnoreMerges ? new WholeWordFirstEncoder(inner, preTokenizer, vocab) : null;
        return new LlmTokenizer(TokenizerKind.HuggingFaceBpe, path, inner, table, specials, config, defaultBos: null,
            defaultEos: [], stripLeadingSpace: false, encoder);
    }

    /// <summary>Rejects what this loader cannot reproduce faithfully; returns the pre-tokenizer pattern.</summary>
    private static string Validate(Parsed p, string path)
    {
        if (p.Vocab is null || p.Vocab.Count == 0)
        {
            throw new TokenizerLoadException("model.vocab is missing or empty.", path);
        }

        if (p.ModelType is not null and not "BPE")
        {
            throw new TokenizerLoadException($"model type '{p.ModelType}' is not supported; only byte-level BPE is.", path);
        }

        if (p.ByteFallback || !p.ByteLevel)
        {
            throw new TokenizerLoadException(
                "not a byte-level BPE tokenizer (SentencePiece-style tokenizer.json); load the SentencePiece tokenizer.model instead.", path);
        }

        if (p.SubwordAffix is not null)
        {
            throw new TokenizerLoadException("continuing_subword_prefix / end_of_word_suffix are not supported.", path);
        }

        if (p.NormalizerType is not null)
        {
            throw new TokenizerLoadException($"normalizer '{p.NormalizerType}' is not supported.", path);
        }

        if (p.SplitCount > 1)
        {
            throw new TokenizerLoadException("pre-tokenizers with more than one Split are not supported.", path);
        }

        return p.SplitPattern
            ?? (p.ByteLevelUsesRegex ? Llama3Defaults.Gpt2Pattern
                : throw new TokenizerLoadException("no pre-tokenizer split pattern (Split regex or ByteLevel use_regex).", path));
    }

    private static Parsed Parse(byte[] json, string path)
    {
        var reader = new Utf8JsonReader(json, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        var p = new Parsed();
        Expect(ref reader, JsonTokenType.StartObject, "the top level", path);
        while (ReadProperty(ref reader, out string name))
        {
            switch (name)
            {
                case "model":
                    ReadModel(ref reader, p, path);
                    break;
                case "added_tokens":
                    ReadAddedTokens(ref reader, p, path);
                    break;
                case "normalizer":
                    using (JsonDocument doc = JsonDocument.ParseValue(ref reader))
                    {
                        p.NormalizerType = DescribeNormalizer(doc.RootElement);
                    }

                    break;
                case "pre_tokenizer":
                case "decoder":
                    using (JsonDocument doc = JsonDocument.ParseValue(ref reader))
                    {
                        Inspect(doc.RootElement, p, isPreTokenizer: name == "pre_tokenizer");
                    }

                    break;
                default:
                    reader.Skip();
                    break;
            }
        }

        return p;
    }

    /// <summary>Reads the next property name and moves onto its value; false at the end of the object.</summary>
    private static bool ReadProperty(ref Utf8JsonReader reader, out string name)
    {
        reader.Read();
        if (reader.TokenType == JsonTokenType.EndObject)
        {
            name = string.Empty;
            return false;
        }

        name = reader.GetString()!;
        reader.Read();
        return true;
    }

    private static void Expect(ref Utf8JsonReader reader, JsonTokenType type, string where, string path)
    {
        if (reader.TokenType == JsonTokenType.None)
        {
            reader.Read();
        }

        if (reader.TokenType != type)
        {
            throw new TokenizerLoadException($"expected {type} for {where} but found {reader.TokenType} (byte {reader.TokenStartIndex}).", path);
        }
    }

    private static void ReadModel(ref Utf8JsonReader reader, Parsed p, string path)
    {
        Expect(ref reader, JsonTokenType.StartObject, "model", path);
        while (ReadProperty(ref reader, out string name))
        {
            switch (name)
            {
                case "type":
                    p.ModelType = reader.TokenType == JsonTokenType.String ? reader.GetString() : null;
                    break;
                case "vocab":
                    p.Vocab = ReadVocab(ref reader, path);
                    break;
                case "merges":
                    p.Merges = ReadMerges(ref reader, path);
                    break;
                case "ignore_merges":
                    p.IgnoreMerges = reader.TokenType == JsonTokenType.True;
                    break;
                case "byte_fallback":
                    p.ByteFallback = reader.TokenType == JsonTokenType.True;
                    break;
                case "continuing_subword_prefix":
                case "end_of_word_suffix":
                    if (reader.TokenType == JsonTokenType.String && reader.ValueSpan.Length > 0)
                    {
                        p.SubwordAffix = reader.GetString();
                    }

                    break;
                default:
                    reader.Skip();
                    break;
            }
        }
    }

    private static List<KeyValuePair<string, int>> ReadVocab(ref Utf8JsonReader reader, string path)
    {
        Expect(ref reader, JsonTokenType.StartObject, "model.vocab", path);
        var vocab = new List<KeyValuePair<string, int>>(131072);
        while (ReadProperty(ref reader, out string token))
        {
            if (reader.TokenType != JsonTokenType.Number || !reader.TryGetInt32(out int id))
            {
                throw new TokenizerLoadException($"model.vocab entry '{token}' does not map to an integer id.", path);
            }

            vocab.Add(new(token, id));
        }

        return vocab;
    }

    private static List<string> ReadMerges(ref Utf8JsonReader reader, string path)
    {
        Expect(ref reader, JsonTokenType.StartArray, "model.merges", path);
        var merges = new List<string>(300000);
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            if (reader.TokenType == JsonTokenType.String)
            {
                // Older files: "a b". Byte-level symbols never contain a space, so the split point is unambiguous.
                merges.Add(reader.GetString()!);
            }
            else if (reader.TokenType == JsonTokenType.StartArray)
            {
                // Newer files: ["a", "b"]; ML.Tokenizers wants the older string form.
                string? left = reader.Read() && reader.TokenType == JsonTokenType.String ? reader.GetString() : null;
                string? right = reader.Read() && reader.TokenType == JsonTokenType.String ? reader.GetString() : null;
                if (left is null || right is null || !reader.Read() || reader.TokenType != JsonTokenType.EndArray)
                {
                    throw new TokenizerLoadException($"merge {merges.Count} is not a pair of strings.", path);
                }

                merges.Add(string.Concat(left, " ", right));
            }
            else
            {
                throw new TokenizerLoadException($"merge {merges.Count} is neither \"a b\" nor [\"a\", \"b\"].", path);
            }
        }

        return merges;
    }

    private static void ReadAddedTokens(ref Utf8JsonReader reader, Parsed p, string path)
    {
        using JsonDocument doc = JsonDocument.ParseValue(ref reader);
        if (doc.RootElement.ValueKind == JsonValueKind.Null)
        {
            return;
        }

        if (doc.RootElement.ValueKind != JsonValueKind.Array)
        {
            throw new TokenizerLoadException("added_tokens is not an array.", path);
        }

        foreach (JsonElement token in doc.RootElement.EnumerateArray())
        {
            if (token.ValueKind != JsonValueKind.Object
                || !token.TryGetProperty("id", out JsonElement id) || !id.TryGetInt32(out int tokenId)
                || !token.TryGetProperty("content", out JsonElement content) || content.ValueKind != JsonValueKind.String)
            {
                throw new TokenizerLoadException("an added_tokens entry lacks an integer 'id' or a string 'content'.", path);
            }

            if (tokenId < 0 || tokenId >= TiktokenLoader.MaxRank)
            {
                throw new TokenizerLoadException($"added_tokens id {tokenId} is outside [0, {TiktokenLoader.MaxRank}).", path);
            }

            bool special = token.TryGetProperty("special", out JsonElement s) && s.ValueKind == JsonValueKind.True;
            p.AddedTokens.Add((tokenId, content.GetString()!, special));
        }
    }

    private static string? DescribeNormalizer(JsonElement normalizer)
    {
        if (normalizer.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        string type = normalizer.TryGetProperty("type", out JsonElement t) && t.ValueKind == JsonValueKind.String ? t.GetString()! : "?";
        bool emptySequence = type == "Sequence" && normalizer.TryGetProperty("normalizers", out JsonElement list)
            && list.ValueKind == JsonValueKind.Array && list.GetArrayLength() == 0;
        return emptySequence ? null : type;
    }

    private static void Inspect(JsonElement element, Parsed p, bool isPreTokenizer)
    {
        if (element.ValueKind != JsonValueKind.Object)
        {
            return;
        }

        string? type = element.TryGetProperty("type", out JsonElement t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;
        switch (type)
        {
            case "Sequence":
                foreach (string listName in (string[])["pretokenizers", "decoders"])
                {
                    if (element.TryGetProperty(listName, out JsonElement list) && list.ValueKind == JsonValueKind.Array)
                    {
                        foreach (JsonElement child in list.EnumerateArray())
                        {
                            Inspect(child, p, isPreTokenizer);
                        }
                    }
                }

                break;
            case "ByteLevel":
                p.ByteLevel = true;
                if (isPreTokenizer && element.TryGetProperty("use_regex", out JsonElement useRegex) && useRegex.ValueKind == JsonValueKind.True)
                {
                    p.ByteLevelUsesRegex = true;
                }

                break;
            case "Split" when isPreTokenizer:
                p.SplitCount++;
                if (element.TryGetProperty("pattern", out JsonElement pattern) && pattern.ValueKind == JsonValueKind.Object
                    && pattern.TryGetProperty("Regex", out JsonElement regex) && regex.ValueKind == JsonValueKind.String)
                {
                    p.SplitPattern = regex.GetString();
                }

                break;
        }
    }
}
