using System.Text.Json;

namespace LocalMxfp4.Tokenization;

/// <summary>The parts of a Hugging Face <c>tokenizer_config.json</c> that matter for special tokens.</summary>
internal sealed class TokenizerConfig
{
    public const string FileName = "tokenizer_config.json";

    /// <summary>id → (content, special) from <c>added_tokens_decoder</c>.</summary>
    public Dictionary<int, (string Content, bool Special)> AddedTokens { get; } = [];

    public string? BosToken { get; private set; }

    public string? EosToken { get; private set; }

    /// <summary>
    /// Reads the first <c>tokenizer_config.json</c> found in <paramref name="directories"/>; null when there is none.
    /// </summary>
    public static TokenizerConfig? TryLoad(params string?[] directories)
    {
        foreach (string? directory in directories)
        {
            if (directory is null)
            {
                continue;
            }

            string path = Path.Combine(directory, FileName);
            if (File.Exists(path))
            {
                return Load(path);
            }
        }

        return null;
    }

    public static TokenizerConfig Load(string path)
    {
        byte[] json = TokenizerFiles.ReadAllBytes(path);
        var config = new TokenizerConfig();
        try
        {
            using var doc = JsonDocument.Parse(json, new JsonDocumentOptions { AllowTrailingCommas = true });
            JsonElement root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new TokenizerLoadException("expected a JSON object at the top level.", path);
            }

            if (root.TryGetProperty("added_tokens_decoder", out JsonElement added) && added.ValueKind == JsonValueKind.Object)
            {
                foreach (JsonProperty entry in added.EnumerateObject())
                {
                    if (!int.TryParse(entry.Name, System.Globalization.CultureInfo.InvariantCulture, out int id) || id < 0 || id >= TiktokenLoader.MaxRank)
                    {
                        throw new TokenizerLoadException($"added_tokens_decoder key '{entry.Name}' is not a token id.", path);
                    }

                    if (entry.Value.ValueKind != JsonValueKind.Object
                        || !entry.Value.TryGetProperty("content", out JsonElement content)
                        || content.ValueKind != JsonValueKind.String)
                    {
                        throw new TokenizerLoadException($"added_tokens_decoder entry {id} has no string 'content'.", path);
                    }

                    bool special = entry.Value.TryGetProperty("special", out JsonElement s) && s.ValueKind == JsonValueKind.True;
                    config.AddedTokens[id] = (content.GetString()!, special);
                }
            }

            config.BosToken = ReadTokenName(root, "bos_token");
            config.EosToken = ReadTokenName(root, "eos_token");
        }
        catch (JsonException ex)
        {
            throw new TokenizerLoadException($"malformed JSON (line {ex.LineNumber + 1}): {ex.Message}", path, innerException: ex);
        }

        return config;
    }

    // bos_token/eos_token are either a plain string or an AddedToken object {"content": ...}.
    private static string? ReadTokenName(JsonElement root, string property)
    {
        if (!root.TryGetProperty(property, out JsonElement value))
        {
            return null;
        }

        return value.ValueKind switch
        {
            JsonValueKind.String => value.GetString(),
            JsonValueKind.Object when value.TryGetProperty("content", out JsonElement c) && c.ValueKind == JsonValueKind.String => c.GetString(),
            _ => null,
        };
    }
}
