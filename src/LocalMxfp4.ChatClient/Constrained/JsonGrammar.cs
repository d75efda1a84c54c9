using System.Text;
using System.Text.Json;

namespace LocalMxfp4.ChatClient.Constrained;

/// <summary>
/// What a constrained reply may be: a JSON value of one root node, or (for tool calls) up to
/// <see cref="MaxRootValues"/> of them separated by ';'. Immutable once built, so one grammar can serve any number of
/// <see cref="JsonRecognizer"/>s.
/// </summary>
internal sealed class JsonGrammar
{
    internal JsonGrammar(GrammarNode[] nodes, int root, int maxRootValues)
    {
        Nodes = nodes;
        Root = root;
        MaxRootValues = maxRootValues;
    }

    public GrammarNode[] Nodes { get; }

    public int Root { get; }

    /// <summary>How many values may follow each other, separated by ';' (1 except for several tool calls).</summary>
    public int MaxRootValues { get; }

    /// <summary>Bytes of the shortest complete reply.</summary>
    public int MinLength => Nodes[Root].MinLength;

    /// <summary>Any single JSON value (<c>ChatResponseFormat.Json</c>).</summary>
    public static JsonGrammar AnyValue()
    {
        var builder = new GrammarBuilder();
        return builder.Build(builder.AnyValue());
    }

    /// <summary>The values a JSON schema allows (<c>ChatResponseFormat.ForJsonSchema</c>).</summary>
    /// <exception cref="JsonSchemaNotSupportedException">The schema uses a keyword that cannot be enforced.</exception>
    public static JsonGrammar FromSchema(JsonElement schema)
    {
        var builder = new GrammarBuilder();
        int root = new JsonSchemaCompiler(builder, schema).CompileRoot();
        return builder.Build(root);
    }

    /// <summary>
    /// LLaMA-3.1 tool calls: <c>{"name": "tool", "parameters": {…}}</c> where the parameters follow the named tool's
    /// schema, up to <paramref name="maxCalls"/> calls separated by ';'.
    /// </summary>
    /// <exception cref="JsonSchemaNotSupportedException">A tool's parameter schema uses a keyword that cannot be enforced (the message names the tool).</exception>
    public static JsonGrammar ToolCalls(IReadOnlyList<(string Name, JsonElement Schema)> tools, int maxCalls)
    {
        ArgumentOutOfRangeException.ThrowIfZero(tools.Count);
        var builder = new GrammarBuilder();
        var parameters = new int[tools.Count];
        for (int i = 0; i < tools.Count; i++)
        {
            try
            {
                parameters[i] = new JsonSchemaCompiler(builder, tools[i].Schema, rootIsObject: true).CompileRoot();
            }
            catch (JsonSchemaNotSupportedException e)
            {
                throw new JsonSchemaNotSupportedException(e.Keyword, e.SchemaPath,
                    $"in the parameters of tool '{tools[i].Name}': {e.Message}");
            }
        }

        int names = builder.Literals("#/name", [.. tools.Select(t => Encoding.UTF8.GetBytes(JsonText.Quote(t.Name)))]);

        // The shortest call is a joint minimum: a short name may come with long parameters. So the bytes after the
        // name — ', "parameters":' (one comma, the quoted key, a colon) and the tool's parameters — count with the name.
        builder[names].ExtraNodes = parameters;
        builder[names].ExtraBytes = 1 + "parameters".Length + 3;
        var call = new GrammarNode(NodeKind.Object, "#")
        {
            Properties =
            [
                new ObjectProperty("name", "name"u8.ToArray(), names, Required: true),
                new ObjectProperty("parameters", "parameters"u8.ToArray(), -1, Required: true),
            ],
            DependentValues = parameters,
        };
        return builder.Build(builder.Add(call), maxCalls);
    }

    /// <summary>Whether <paramref name="utf8"/> is a complete reply of this grammar (for tests and diagnostics).</summary>
    public bool Accepts(ReadOnlySpan<byte> utf8)
    {
        var recognizer = new JsonRecognizer(this);
        foreach (byte b in utf8)
        {
            if (!recognizer.Advance(b))
            {
                return false;
            }
        }

        return recognizer.IsComplete;
    }
}
