using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Microsoft.Extensions.AI;

namespace LocalMxfp4.ChatClient.Tools;

/// <summary>
/// The LLaMA-3.1 JSON tool-calling prompt, as Meta's chat template writes it (custom tools in the first user
/// message): an "Environment: ipython" system preamble, then the instruction and one indented JSON definition per tool.
/// </summary>
internal static class Llama31ToolPrompt
{
    /// <summary>What the user turn says before the tool definitions.</summary>
    public const string Instruction =
        "Given the following functions, please respond with a JSON for a function call with its proper arguments that best answers the given prompt.\n\n" +
        "Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its value}. Do not use variables.\n\n";

    private static readonly JsonWriterOptions Indented = new()
    {
        Indented = true,
        IndentSize = 4,

        // Descriptions are for the model to read: keep quotes, apostrophes and non-ASCII text as they are.
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>The system preamble of a conversation with tools.</summary>
    public static string SystemPreamble(DateTimeOffset today) =>
        "Environment: ipython\nCutting Knowledge Date: December 2023\nToday Date: " +
        today.ToString("dd MMM yyyy", CultureInfo.InvariantCulture) + "\n\n";

    /// <summary>The instruction and every tool definition, ready to be put before the first user message.</summary>
    public static string Definitions(IReadOnlyList<AIFunctionDeclaration> tools)
    {
        var text = new StringBuilder(Instruction);
        foreach (AIFunctionDeclaration tool in tools)
        {
            text.Append(Definition(tool)).Append("\n\n");
        }

        return text.ToString();
    }

    /// <summary>One tool in the OpenAI function format Meta's template prints: type, function name, description, parameters.</summary>
    public static string Definition(AIFunctionDeclaration tool)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, Indented))
        {
            writer.WriteStartObject();
            writer.WriteString("type", "function");
            writer.WriteStartObject("function");
            writer.WriteString("name", tool.Name);
            if (!string.IsNullOrWhiteSpace(tool.Description))
            {
                writer.WriteString("description", tool.Description);
            }

            writer.WritePropertyName("parameters");
            if (tool.JsonSchema.ValueKind == JsonValueKind.Undefined)
            {
                writer.WriteStartObject();
                writer.WriteString("type", "object");
                writer.WriteStartObject("properties");
                writer.WriteEndObject();
                writer.WriteEndObject();
            }
            else
            {
                tool.JsonSchema.WriteTo(writer);
            }

            writer.WriteEndObject();
            writer.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.ToArray());
    }
}
