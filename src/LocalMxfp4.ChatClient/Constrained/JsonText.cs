using System.Globalization;
using System.Text;
using System.Text.Json;

namespace LocalMxfp4.ChatClient.Constrained;

/// <summary>
/// Writes JSON text with the least escaping JSON allows (only '"', '\' and control characters), so that property
/// names and enum values are matched as the bytes a model would naturally write — not as <c>\u00e9</c> escapes.
/// </summary>
internal static class JsonText
{
    /// <summary>The string as a JSON string literal, quotes included.</summary>
    public static string Quote(string value)
    {
        var text = new StringBuilder(value.Length + 2).Append('"');
        AppendEscaped(text, value);
        return text.Append('"').ToString();
    }

    /// <summary>The string as it appears between the quotes.</summary>
    public static string Escape(string value)
    {
        var text = new StringBuilder(value.Length);
        AppendEscaped(text, value);
        return text.ToString();
    }

    /// <summary>A JSON value as compact text (no whitespace), strings minimally escaped, numbers as written.</summary>
    public static string Compact(JsonElement value)
    {
        var text = new StringBuilder();
        Append(text, value, ",", ":");
        return text.ToString();
    }

    /// <summary>
    /// Writes <paramref name="value"/> with the given separators between items and after keys: compact ("," ":") for
    /// grammar output, Python json.dumps style (", " ": ") for the LLaMA-3.1 tool format.
    /// </summary>
    internal static void Append(StringBuilder text, JsonElement value, string itemSeparator, string keySeparator)
    {
        switch (value.ValueKind)
        {
            case JsonValueKind.Object:
                text.Append('{');
                bool first = true;
                foreach (JsonProperty p in value.EnumerateObject())
                {
                    text.Append(first ? "" : itemSeparator).Append(Quote(p.Name)).Append(keySeparator);
                    Append(text, p.Value, itemSeparator, keySeparator);
                    first = false;
                }

                text.Append('}');
                break;
            case JsonValueKind.Array:
                text.Append('[');
                int i = 0;
                foreach (JsonElement item in value.EnumerateArray())
                {
                    text.Append(i++ == 0 ? "" : itemSeparator);
                    Append(text, item, itemSeparator, keySeparator);
                }

                text.Append(']');
                break;
            case JsonValueKind.String:
                text.Append(Quote(value.GetString()!));
                break;
            default:
                text.Append(value.GetRawText());
                break;
        }
    }

    private static void AppendEscaped(StringBuilder text, string value)
    {
        foreach (char c in value)
        {
            switch (c)
            {
                case '"': text.Append("\\\""); break;
                case '\\': text.Append("\\\\"); break;
                case '\n': text.Append("\\n"); break;
                case '\r': text.Append("\\r"); break;
                case '\t': text.Append("\\t"); break;
                case '\b': text.Append("\\b"); break;
                case '\f': text.Append("\\f"); break;
                case < ' ': text.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture)); break;
                default: text.Append(c); break;
            }
        }
    }
}
