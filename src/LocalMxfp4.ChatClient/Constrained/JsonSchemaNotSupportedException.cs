namespace LocalMxfp4.ChatClient.Constrained;

/// <summary>
/// A JSON schema (from <c>ChatResponseFormat.ForJsonSchema</c> or a tool's parameters) uses a keyword or a combination
/// that constrained decoding cannot enforce. It is reported instead of ignored, because ignoring an assertion would let
/// the model produce JSON the schema rejects.
/// </summary>
public sealed class JsonSchemaNotSupportedException : NotSupportedException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="keyword">The schema keyword that cannot be honoured, e.g. <c>pattern</c>.</param>
    /// <param name="schemaPath">Where in the schema it is, as a JSON pointer (e.g. <c>#/properties/when</c>).</param>
    /// <param name="reason">Why, and what to do instead.</param>
    public JsonSchemaNotSupportedException(string keyword, string schemaPath, string reason)
        : base($"JSON schema keyword '{keyword}' at {schemaPath} is not supported by constrained decoding: {reason}")
    {
        Keyword = keyword;
        SchemaPath = schemaPath;
    }

    /// <summary>Creates the exception with a message only.</summary>
    public JsonSchemaNotSupportedException()
        : this("(unknown)", "#", "the schema cannot be enforced.")
    {
    }

    /// <summary>Creates the exception with a message only.</summary>
    public JsonSchemaNotSupportedException(string message)
        : base(message)
    {
        Keyword = "(unknown)";
        SchemaPath = "#";
    }

    /// <summary>Creates the exception with a message and an inner exception.</summary>
    public JsonSchemaNotSupportedException(string message, Exception innerException)
        : base(message, innerException)
    {
        Keyword = "(unknown)";
        SchemaPath = "#";
    }

    /// <summary>The keyword that cannot be honoured.</summary>
    public string Keyword { get; }

    /// <summary>The JSON pointer of the schema object that holds it.</summary>
    public string SchemaPath { get; }
}
