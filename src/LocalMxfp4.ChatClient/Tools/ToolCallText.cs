using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using LocalMxfp4.ChatClient.Constrained;
using Microsoft.Extensions.AI;

namespace LocalMxfp4.ChatClient.Tools;

/// <summary>
/// The text of LLaMA-3.1 JSON tool calls: <c>{"name": "tool", "parameters": {…}}</c>, several separated by ';'.
/// Reads a model's reply into calls (the rules of vLLM's <c>llama3_json</c> parser) and writes calls and results
/// back the way Meta's chat template does (Python <c>json.dumps</c> spacing).
/// </summary>
internal static class ToolCallText
{
    /// <summary>
    /// Reads <paramref name="text"/> as one or more tool calls. Every part must be a JSON object with a non-empty string
    /// <c>name</c> naming one of <paramref name="knownNames"/> and an object (or a string holding one) under
    /// <c>parameters</c> or <c>arguments</c>; parts are separated by ';'. Anything else — prose, JSON that is not a call,
    /// an unknown tool — fails the whole text, so it is returned to the caller as text.
    /// </summary>
    public static bool TryParse(string text, IReadOnlyCollection<string> knownNames, out List<FunctionCallContent> calls)
    {
        calls = [];
        byte[] utf8 = Encoding.UTF8.GetBytes(text);
        int at = SkipSpace(utf8, 0);
        while (at < utf8.Length)
        {
            var reader = new Utf8JsonReader(utf8.AsSpan(at), new JsonReaderOptions { AllowMultipleValues = true });
            JsonElement call;
            try
            {
                if (!JsonElement.TryParseValue(ref reader, out JsonElement? value) || value is not { } parsed)
                {
                    return false;
                }

                call = parsed;
            }
            catch (JsonException)
            {
                return false;
            }

            if (!TryRead(call, knownNames, out FunctionCallContent? content))
            {
                return false;
            }

            calls.Add(content);
            at = SkipSpace(utf8, at + (int)reader.BytesConsumed);
            if (at < utf8.Length)
            {
                if (utf8[at] != ';')
                {
                    return false;
                }

                at = SkipSpace(utf8, at + 1);
            }
        }

        return calls.Count > 0;
    }

    /// <summary>A call as the assistant turn of Meta's template writes it: <c>{"name": "f", "parameters": {"a": 1}}</c>.</summary>
    public static string Format(FunctionCallContent call)
    {
        var text = new StringBuilder("{\"name\": ").Append(JsonText.Quote(call.Name)).Append(", \"parameters\": ");
        JsonElement arguments = JsonSerializer.SerializeToElement(
            call.Arguments ?? new Dictionary<string, object?>(),
            AIJsonUtilities.DefaultOptions.GetTypeInfo(typeof(IDictionary<string, object?>)));
        AppendPythonStyle(text, arguments);
        return text.Append('}').ToString();
    }

    /// <summary>A tool result as the <c>ipython</c> turn carries it: <c>{"output": …}</c>.</summary>
    public static string FormatResult(FunctionResultContent result)
    {
        JsonElement output = JsonSerializer.SerializeToElement(result.Result, AIJsonUtilities.DefaultOptions.GetTypeInfo(typeof(object)));
        var text = new StringBuilder("{\"output\": ");
        AppendPythonStyle(text, output);
        return text.Append('}').ToString();
    }

    /// <summary>A JSON value with Python <c>json.dumps</c> separators (", " and ": "), strings minimally escaped.</summary>
    public static void AppendPythonStyle(StringBuilder text, JsonElement value) => JsonText.Append(text, value, ", ", ": ");

    /// <summary>A fresh call id: LLaMA writes none, and the id must round-trip through <c>FunctionResultContent.CallId</c>.</summary>
    public static string NewCallId() => "call_" + RandomNumberGenerator.GetHexString(16, lowercase: true);

    private static bool TryRead(JsonElement call, IReadOnlyCollection<string> knownNames, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out FunctionCallContent? content)
    {
        content = null;
        if (call.ValueKind != JsonValueKind.Object
            || !call.TryGetProperty("name", out JsonElement name) || name.ValueKind != JsonValueKind.String
            || name.GetString() is not { Length: > 0 } toolName || !knownNames.Contains(toolName))
        {
            return false;
        }

        if (!call.TryGetProperty("parameters", out JsonElement arguments) && !call.TryGetProperty("arguments", out arguments))
        {
            return false;
        }

        if (arguments.ValueKind == JsonValueKind.String)
        {
            // Some fine-tunes write the arguments as a JSON string, as OpenAI's wire format does.
            try
            {
                using var document = JsonDocument.Parse(arguments.GetString()!);
                arguments = document.RootElement.Clone();
            }
            catch (JsonException)
            {
                return false;
            }
        }

        if (arguments.ValueKind != JsonValueKind.Object)
        {
            return false;
        }

        var values = new Dictionary<string, object?>(StringComparer.Ordinal);
        foreach (JsonProperty p in arguments.EnumerateObject())
        {
            values[p.Name] = p.Value.Clone();
        }

        content = new FunctionCallContent(NewCallId(), toolName, values) { RawRepresentation = call.Clone() };
        return true;
    }

    private static int SkipSpace(byte[] utf8, int at)
    {
        while (at < utf8.Length && utf8[at] is (byte)' ' or (byte)'\n' or (byte)'\r' or (byte)'\t')
        {
            at++;
        }

        return at;
    }
}
