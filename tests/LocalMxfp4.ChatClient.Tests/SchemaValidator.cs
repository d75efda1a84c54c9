using System.Globalization;
using System.Text.Json;

namespace LocalMxfp4.ChatClient.Tests;

/// <summary>
/// An independent JSON Schema check for the keywords the tests use (type, properties, required,
/// additionalProperties, items, min/maxItems, min/maxLength, bounds, enum, const, anyOf/oneOf, format, local $ref),
/// written from the specification rather than from the decoder's grammar, so the two can disagree.
/// </summary>
internal static class SchemaValidator
{
    /// <summary>Null when <paramref name="value"/> satisfies <paramref name="schema"/>, else what is wrong and where.</summary>
    public static string? Check(JsonElement schema, JsonElement value) => Check(schema, schema, value, "$");

    private static string? Check(JsonElement root, JsonElement schema, JsonElement value, string at)
    {
        if (schema.ValueKind == JsonValueKind.True)
        {
            return null;
        }

        if (schema.ValueKind == JsonValueKind.False)
        {
            return $"{at}: schema false";
        }

        if (schema.TryGetProperty("$ref", out JsonElement reference))
        {
            JsonElement target = root;
            foreach (string part in reference.GetString()!.Split('/').Skip(1))
            {
                target = target.GetProperty(part.Replace("~1", "/").Replace("~0", "~"));
            }

            return Check(root, target, value, at);
        }

        foreach (string union in new[] { "anyOf", "oneOf" })
        {
            if (schema.TryGetProperty(union, out JsonElement alternatives))
            {
                int matches = alternatives.EnumerateArray().Count(a => Check(root, a, value, at) is null);
                if (matches == 0 || (union == "oneOf" && matches > 1))
                {
                    return $"{at}: {matches} alternatives of {union} match";
                }
            }
        }

        if (schema.TryGetProperty("type", out JsonElement type))
        {
            string[] types = type.ValueKind == JsonValueKind.Array ? [.. type.EnumerateArray().Select(t => t.GetString()!)] : [type.GetString()!];
            if (!types.Any(t => IsType(value, t)))
            {
                return $"{at}: {value.ValueKind} is not {string.Join("|", types)}";
            }
        }

        if (schema.TryGetProperty("enum", out JsonElement values) && !values.EnumerateArray().Any(v => JsonElement.DeepEquals(v, value)))
        {
            return $"{at}: {value.GetRawText()} is not in the enum";
        }

        if (schema.TryGetProperty("const", out JsonElement constant) && !JsonElement.DeepEquals(constant, value))
        {
            return $"{at}: not the const";
        }

        switch (value.ValueKind)
        {
            case JsonValueKind.Object:
                return CheckObject(root, schema, value, at);
            case JsonValueKind.Array:
                int count = value.GetArrayLength();
                if (schema.TryGetProperty("minItems", out JsonElement minItems) && count < minItems.GetInt32())
                {
                    return $"{at}: fewer than minItems";
                }

                if (schema.TryGetProperty("maxItems", out JsonElement maxItems) && count > maxItems.GetInt32())
                {
                    return $"{at}: more than maxItems";
                }

                if (schema.TryGetProperty("items", out JsonElement items))
                {
                    int i = 0;
                    foreach (JsonElement item in value.EnumerateArray())
                    {
                        if (Check(root, items, item, $"{at}[{i++}]") is { } error)
                        {
                            return error;
                        }
                    }
                }

                return null;
            case JsonValueKind.String:
                string s = value.GetString()!;
                int length = s.EnumerateRunes().Count();
                if (schema.TryGetProperty("minLength", out JsonElement minLength) && length < minLength.GetInt32())
                {
                    return $"{at}: shorter than minLength";
                }

                if (schema.TryGetProperty("maxLength", out JsonElement maxLength) && length > maxLength.GetInt32())
                {
                    return $"{at}: longer than maxLength";
                }

                if (schema.TryGetProperty("format", out JsonElement format))
                {
                    bool ok = format.GetString() switch
                    {
                        "date-time" => DateTimeOffset.TryParse(s, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out _) && s.Contains('T'),
                        "date" => DateOnly.TryParseExact(s, "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.None, out _),
                        "uuid" => Guid.TryParseExact(s, "D", out _),
                        _ => true,
                    };
                    if (!ok)
                    {
                        return $"{at}: '{s}' is not a {format.GetString()}";
                    }
                }

                return null;
            case JsonValueKind.Number:
                decimal x = value.GetDecimal();
                if ((schema.TryGetProperty("minimum", out JsonElement min) && x < min.GetDecimal())
                    || (schema.TryGetProperty("maximum", out JsonElement max) && x > max.GetDecimal())
                    || (schema.TryGetProperty("exclusiveMinimum", out JsonElement exMin) && x <= exMin.GetDecimal())
                    || (schema.TryGetProperty("exclusiveMaximum", out JsonElement exMax) && x >= exMax.GetDecimal()))
                {
                    return $"{at}: {x} out of bounds";
                }

                return null;
            default:
                return null;
        }
    }

    private static string? CheckObject(JsonElement root, JsonElement schema, JsonElement value, string at)
    {
        var seen = new HashSet<string>();
        foreach (JsonProperty p in value.EnumerateObject())
        {
            if (!seen.Add(p.Name))
            {
                return $"{at}: duplicate key {p.Name}";
            }

            if (schema.TryGetProperty("properties", out JsonElement properties) && properties.TryGetProperty(p.Name, out JsonElement sub))
            {
                if (Check(root, sub, p.Value, $"{at}.{p.Name}") is { } error)
                {
                    return error;
                }
            }
            else if (schema.TryGetProperty("additionalProperties", out JsonElement additional) && Check(root, additional, p.Value, $"{at}.{p.Name}") is { } error)
            {
                return error;
            }
        }

        if (schema.TryGetProperty("required", out JsonElement required))
        {
            foreach (JsonElement r in required.EnumerateArray())
            {
                if (!seen.Contains(r.GetString()!))
                {
                    return $"{at}: missing required {r.GetString()}";
                }
            }
        }

        return null;
    }

    private static bool IsType(JsonElement value, string type) => type switch
    {
        "object" => value.ValueKind == JsonValueKind.Object,
        "array" => value.ValueKind == JsonValueKind.Array,
        "string" => value.ValueKind == JsonValueKind.String,
        "number" => value.ValueKind == JsonValueKind.Number,
        "integer" => value.ValueKind == JsonValueKind.Number && value.TryGetDecimal(out decimal d) && d == decimal.Truncate(d),
        "boolean" => value.ValueKind is JsonValueKind.True or JsonValueKind.False,
        "null" => value.ValueKind == JsonValueKind.Null,
        _ => false,
    };
}
