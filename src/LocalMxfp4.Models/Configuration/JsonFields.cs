using System.Text.Json;

namespace LocalMxfp4.Models.Configuration;

/// <summary>Typed reads of a JSON object's fields that fail with the file and field named.</summary>
internal readonly struct JsonFields(JsonElement obj, string filePath, string prefix = "")
{
    public int RequiredPositiveInt(string name) =>
        OptionalPositiveInt(name) ?? throw Error(name, "is required.");

    public int? OptionalPositiveInt(string name)
    {
        if (!TryGet(name, out JsonElement e))
        {
            return null;
        }

        if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out int v))
        {
            throw Error(name, $"must be an integer, got {Describe(e)}.");
        }

        return v > 0 ? v : throw Error(name, $"must be positive, got {v}.");
    }

    public double RequiredDouble(string name) => OptionalDouble(name) ?? throw Error(name, "is required.");

    public double? OptionalDouble(string name)
    {
        if (!TryGet(name, out JsonElement e))
        {
            return null;
        }

        return e.ValueKind == JsonValueKind.Number && e.TryGetDouble(out double v) && double.IsFinite(v)
            ? v
            : throw Error(name, $"must be a number, got {Describe(e)}.");
    }

    public bool? OptionalBool(string name)
    {
        if (!TryGet(name, out JsonElement e))
        {
            return null;
        }

        return e.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw Error(name, $"must be true or false, got {Describe(e)}."),
        };
    }

    public string? OptionalString(string name)
    {
        if (!TryGet(name, out JsonElement e))
        {
            return null;
        }

        return e.ValueKind == JsonValueKind.String ? e.GetString() : throw Error(name, $"must be a string, got {Describe(e)}.");
    }

    public int? OptionalTokenId(string name, int vocabularySize)
    {
        if (!TryGet(name, out JsonElement e))
        {
            return null;
        }

        return TokenId(name, e, vocabularySize);
    }

    /// <summary>Hugging Face writes eos_token_id as a number or a list of numbers.</summary>
    public IReadOnlyList<int> OptionalTokenIds(string name, int vocabularySize)
    {
        if (!TryGet(name, out JsonElement e))
        {
            return [];
        }

        if (e.ValueKind == JsonValueKind.Array)
        {
            var ids = new List<int>();
            foreach (JsonElement item in e.EnumerateArray())
            {
                ids.Add(TokenId(name, item, vocabularySize));
            }

            return ids;
        }

        return [TokenId(name, e, vocabularySize)];
    }

    private int TokenId(string name, JsonElement e, int vocabularySize)
    {
        if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out int id))
        {
            throw Error(name, $"must be a token id (integer) or a list of them, got {Describe(e)}.");
        }

        return id >= 0 && id < vocabularySize ? id : throw Error(name, $"{id} is outside the vocabulary [0, {vocabularySize}).");
    }

    private bool TryGet(string name, out JsonElement value)
    {
        if (obj.TryGetProperty(name, out value) && value.ValueKind != JsonValueKind.Null)
        {
            return true;
        }

        value = default;
        return false;
    }

    private ModelConfigException Error(string name, string message) => new(filePath, prefix + name, message);

    private static string Describe(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.String => $"\"{e.GetString()}\"",
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        _ => e.GetRawText(),
    };
}
