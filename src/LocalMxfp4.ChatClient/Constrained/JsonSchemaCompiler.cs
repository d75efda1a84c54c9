using System.Text;
using System.Text.Json;

namespace LocalMxfp4.ChatClient.Constrained;

/// <summary>
/// Compiles a JSON Schema (draft 2020-12, as <c>AIJsonUtilities</c> writes it) into grammar nodes. Supported:
/// <c>type</c> (one or a list), objects (<c>properties</c>, <c>required</c>, <c>additionalProperties</c>), arrays
/// (<c>items</c>, <c>minItems</c>, <c>maxItems</c>), strings (<c>minLength</c>, <c>maxLength</c>, <c>format</c> date-time /
/// date / uuid), numbers and integers (<c>minimum</c>, <c>maximum</c>, <c>exclusiveMinimum</c>, <c>exclusiveMaximum</c>),
/// <c>enum</c>, <c>const</c>, <c>anyOf</c> / <c>oneOf</c> of alternatives that differ in their first byte, and local
/// <c>$ref</c> (recursion included). Annotations are skipped; every other keyword throws
/// <see cref="JsonSchemaNotSupportedException"/> naming it, because ignoring an assertion could produce JSON the schema rejects.
/// </summary>
/// <remarks>
/// Objects are written with their properties in declaration order (optional ones may be left out) and no properties
/// beyond the declared ones: a subset of what the schema allows that every deserializer accepts.
/// </remarks>
internal sealed class JsonSchemaCompiler
{
    // Keywords with no effect on which instances are valid.
    private static readonly HashSet<string> Annotations =
    [
        "$schema", "$id", "$anchor", "$comment", "$vocabulary", "title", "description", "default", "examples",
        "readOnly", "writeOnly", "deprecated", "contentMediaType", "contentEncoding", "contentSchema",
        // Semantic Kernel 1.82 writes the function description under this non-standard root key.
        "condition",
    ];

    private static readonly HashSet<string> Handled =
    [
        "type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems", "minLength", "maxLength",
        "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "enum", "const", "anyOf", "oneOf", "$ref",
        "$defs", "definitions",
    ];

    private static readonly Dictionary<string, string> Unsupported = new(StringComparer.Ordinal)
    {
        ["pattern"] = "regular expressions cannot be enforced while decoding; use enum, format or a plain string and validate afterwards.",
        ["patternProperties"] = "regular expressions cannot be enforced while decoding; list the properties under 'properties'.",
        ["multipleOf"] = "divisibility cannot be enforced digit by digit; use an integer or an enum.",
        ["uniqueItems"] = "uniqueness of array items cannot be enforced while decoding; deduplicate after parsing.",
        ["contains"] = "'contains' cannot be enforced while decoding.",
        ["minContains"] = "'contains' cannot be enforced while decoding.",
        ["maxContains"] = "'contains' cannot be enforced while decoding.",
        ["prefixItems"] = "tuple arrays are not supported; use an object with named properties.",
        ["additionalItems"] = "tuple arrays are not supported; use an object with named properties.",
        ["unevaluatedItems"] = "unevaluated* keywords are not supported.",
        ["unevaluatedProperties"] = "unevaluated* keywords are not supported; use additionalProperties: false.",
        ["minProperties"] = "property counts are not enforced; list the properties and mark them required.",
        ["maxProperties"] = "property counts are not enforced; list the properties instead.",
        ["propertyNames"] = "key constraints are not supported; list the properties under 'properties'.",
        ["dependentRequired"] = "conditional requirements are not supported; mark the properties required or optional.",
        ["dependentSchemas"] = "conditional schemas are not supported.",
        ["dependencies"] = "conditional schemas are not supported.",
        ["allOf"] = "intersections of schemas are not supported; merge them into one schema.",
        ["not"] = "negated schemas are not supported.",
        ["if"] = "conditional schemas are not supported.",
        ["then"] = "conditional schemas are not supported.",
        ["else"] = "conditional schemas are not supported.",
        ["$dynamicRef"] = "dynamic references are not supported; use a local $ref.",
        ["$dynamicAnchor"] = "dynamic references are not supported; use a local $ref.",
        ["$recursiveRef"] = "dynamic references are not supported; use a local $ref.",
        ["$recursiveAnchor"] = "dynamic references are not supported; use a local $ref.",
        ["nullable"] = "this is an OpenAPI extension, not JSON Schema; write \"type\": [\"string\", \"null\"] instead.",
    };

    private readonly GrammarBuilder _builder;
    private readonly JsonElement _document;
    private readonly HashSet<string> _refTargets = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _placeholders = new(StringComparer.Ordinal);

    private readonly bool _rootIsObject;

    /// <param name="builder">Where the nodes go.</param>
    /// <param name="document">The schema.</param>
    /// <param name="rootIsObject">
    /// Tool parameters: the value must be an object, so a root without a type is an object and a root type list
    /// keeps only "object"; an absent schema means no parameters.
    /// </param>
    public JsonSchemaCompiler(GrammarBuilder builder, JsonElement document, bool rootIsObject = false)
    {
        _builder = builder;
        _document = document;
        _rootIsObject = rootIsObject;
        CollectReferences(document, "#");
    }

    /// <summary>Compiles the whole document; returns the root node.</summary>
    /// <exception cref="JsonSchemaNotSupportedException">A keyword cannot be enforced, or nothing satisfies the schema.</exception>
    public int CompileRoot()
    {
        if (_document.ValueKind == JsonValueKind.Undefined)
        {
            return _rootIsObject ? _builder.Add(new GrammarNode(NodeKind.Object, "#")) : _builder.AnyValue();
        }

        if (_rootIsObject && _document.ValueKind == JsonValueKind.True)
        {
            return _builder.Add(new GrammarNode(NodeKind.Object, "#") { MapKey = _builder.FreeString(), MapValue = _builder.AnyValue() });
        }

        int root = Compile(_document, "#");
        return root >= 0 ? root : throw new JsonSchemaNotSupportedException("false", "#", "the schema is false: no value satisfies it.");
    }

    private int Compile(JsonElement schema, string path)
    {
        if (!_refTargets.Contains(path))
        {
            return CompileSchema(schema, path);
        }

        // A $ref target may be reached again while it is being compiled (a recursive type): hand out a one-branch
        // union first and fill it in afterwards, so the reference becomes a cycle in the grammar.
        if (_placeholders.TryGetValue(path, out int existing))
        {
            return existing;
        }

        var holder = new GrammarNode(NodeKind.Union, path);
        int id = _builder.Add(holder);
        _placeholders[path] = id;
        int inner = CompileSchema(schema, path);
        holder.Branches = inner >= 0 ? [inner] : [];
        return id;
    }

    private int CompileSchema(JsonElement schema, string path)
    {
        switch (schema.ValueKind)
        {
            case JsonValueKind.True:
                return _builder.AnyValue();
            case JsonValueKind.False:
                return -1;
            case JsonValueKind.Object:
                break;
            default:
                throw new JsonSchemaNotSupportedException("(schema)", path, $"a schema must be an object or a boolean, not {schema.ValueKind}.");
        }

        var assertions = new List<string>();
        foreach (JsonProperty p in schema.EnumerateObject())
        {
            if (Annotations.Contains(p.Name) || p.Name is "$defs" or "definitions")
            {
                continue;
            }

            if (Unsupported.TryGetValue(p.Name, out string? reason))
            {
                throw new JsonSchemaNotSupportedException(p.Name, path, reason);
            }

            if (!Handled.Contains(p.Name))
            {
                throw new JsonSchemaNotSupportedException(p.Name, path,
                    "it is not a JSON Schema keyword this decoder knows, so it cannot tell whether ignoring it is safe; remove it or move it under 'description'.");
            }

            assertions.Add(p.Name);
        }

        if (schema.TryGetProperty("$ref", out JsonElement reference))
        {
            if (assertions.Count > 1)
            {
                throw new JsonSchemaNotSupportedException("$ref", path,
                    $"$ref next to other assertions ({string.Join(", ", assertions.Where(a => a != "$ref"))}) is not supported; move them into the referenced schema.");
            }

            string target = Target(reference, path);
            return Compile(Resolve(target, path), target);
        }

        foreach (string union in new[] { "anyOf", "oneOf" })
        {
            if (!schema.TryGetProperty(union, out JsonElement alternatives))
            {
                continue;
            }

            if (assertions.Count > 1)
            {
                throw new JsonSchemaNotSupportedException(union, path,
                    $"{union} next to other assertions ({string.Join(", ", assertions.Where(a => a != union))}) is not supported; move them into each alternative.");
            }

            if (alternatives.ValueKind != JsonValueKind.Array || alternatives.GetArrayLength() == 0)
            {
                throw new JsonSchemaNotSupportedException(union, path, "it must be a non-empty array of schemas.");
            }

            // oneOf is safe as anyOf here: alternatives must differ in their first byte, so at most one can match.
            return _builder.Union(path, alternatives.EnumerateArray().Select((a, i) => Compile(a, $"{path}/{union}/{i}")));
        }

        HashSet<string> types = Types(schema, path);
        if (_rootIsObject && path == "#")
        {
            if (types.Count > 0 && !types.Contains("object"))
            {
                throw new JsonSchemaNotSupportedException("type", path, "tool parameters must be a JSON object schema (\"type\": \"object\").");
            }

            types = ["object"];
        }
        if (schema.TryGetProperty("enum", out JsonElement values) || schema.TryGetProperty("const", out values))
        {
            return CompileEnum(schema, values, types, path);
        }

        if (types.Count == 0)
        {
            return _builder.AnyValue();
        }

        var branches = new List<int>();
        foreach (string type in types)
        {
            branches.Add(type switch
            {
                "object" => CompileObject(schema, path),
                "array" => CompileArray(schema, path),
                "string" => CompileString(schema, path),
                "number" => CompileNumber(schema, path, integer: false),
                "integer" when !types.Contains("number") => CompileNumber(schema, path, integer: true),
                "integer" => -1,
                "boolean" => _builder.Literals(path, ["true"u8.ToArray(), "false"u8.ToArray()]),
                "null" => _builder.Literals(path, ["null"u8.ToArray()]),
                _ => throw new JsonSchemaNotSupportedException("type", path, $"unknown type '{type}'; use object, array, string, number, integer, boolean or null."),
            });
        }

        return _builder.Union(path, branches);
    }

    // The types named by "type", or those implied by the keywords present when it is absent (empty = any value).
    private static HashSet<string> Types(JsonElement schema, string path)
    {
        var types = new HashSet<string>(StringComparer.Ordinal);
        if (schema.TryGetProperty("type", out JsonElement type))
        {
            if (type.ValueKind == JsonValueKind.String)
            {
                types.Add(type.GetString()!);
            }
            else if (type.ValueKind == JsonValueKind.Array && type.GetArrayLength() > 0)
            {
                foreach (JsonElement t in type.EnumerateArray())
                {
                    types.Add(t.ValueKind == JsonValueKind.String ? t.GetString()! : throw new JsonSchemaNotSupportedException("type", path, "type names must be strings."));
                }
            }
            else
            {
                throw new JsonSchemaNotSupportedException("type", path, "it must be a type name or a non-empty array of type names.");
            }

            return types;
        }

        bool Has(params string[] keywords) => keywords.Any(k => schema.TryGetProperty(k, out _));
        if (Has("properties", "required", "additionalProperties"))
        {
            types.Add("object");
        }

        if (Has("items", "minItems", "maxItems"))
        {
            types.Add("array");
        }

        if (Has("minLength", "maxLength", "format"))
        {
            types.Add("string");
        }

        if (Has("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"))
        {
            types.Add("number");
        }

        return types;
    }

    private int CompileObject(JsonElement schema, string path)
    {
        bool hasProperties = schema.TryGetProperty("properties", out JsonElement properties);
        if (hasProperties && properties.ValueKind != JsonValueKind.Object)
        {
            throw new JsonSchemaNotSupportedException("properties", path, "it must be an object of schemas.");
        }

        var required = new List<string>();
        if (schema.TryGetProperty("required", out JsonElement req))
        {
            if (req.ValueKind != JsonValueKind.Array || req.EnumerateArray().Any(r => r.ValueKind != JsonValueKind.String))
            {
                throw new JsonSchemaNotSupportedException("required", path, "it must be an array of property names.");
            }

            required.AddRange(req.EnumerateArray().Select(r => r.GetString()!).Distinct());
        }

        bool hasAdditional = schema.TryGetProperty("additionalProperties", out JsonElement additional);
        bool additionalFalse = hasAdditional && additional.ValueKind == JsonValueKind.False;
        bool additionalSchema = hasAdditional && additional.ValueKind == JsonValueKind.Object;
        if (hasAdditional && additional.ValueKind is not (JsonValueKind.True or JsonValueKind.False or JsonValueKind.Object))
        {
            throw new JsonSchemaNotSupportedException("additionalProperties", path, "it must be a boolean or a schema.");
        }

        if (additionalSchema && hasProperties && properties.EnumerateObject().Any())
        {
            throw new JsonSchemaNotSupportedException("additionalProperties", path,
                "a schema for additional keys next to declared 'properties' is not supported; set additionalProperties to false, or use a map without 'properties'.");
        }

        var list = new List<ObjectProperty>();
        if (hasProperties)
        {
            foreach (JsonProperty p in properties.EnumerateObject())
            {
                bool isRequired = required.Contains(p.Name);
                int value = Compile(p.Value, $"{path}/properties/{PointerEscape(p.Name)}");
                if (value < 0)
                {
                    if (isRequired)
                    {
                        throw new JsonSchemaNotSupportedException("required", path, $"property '{p.Name}' is required but its schema is false.");
                    }

                    continue;
                }

                list.Add(new ObjectProperty(p.Name, Encoding.UTF8.GetBytes(JsonText.Escape(p.Name)), value, isRequired));
            }
        }

        foreach (string name in required.Where(r => !list.Any(p => p.Name == r)))
        {
            if (hasProperties && properties.TryGetProperty(name, out _))
            {
                continue; // Its schema is false; reported above.
            }

            if (additionalFalse)
            {
                throw new JsonSchemaNotSupportedException("required", path, $"'{name}' is required but is not in 'properties' and additionalProperties is false, so no object satisfies the schema.");
            }

            if (additionalSchema)
            {
                throw new JsonSchemaNotSupportedException("required", path, $"required key '{name}' in a map (additionalProperties schema, no properties) is not supported; declare it under 'properties'.");
            }

            list.Add(new ObjectProperty(name, Encoding.UTF8.GetBytes(JsonText.Escape(name)), _builder.AnyValue(), Required: true));
        }

        var node = new GrammarNode(NodeKind.Object, path);
        if (hasProperties || additionalFalse || list.Count > 0)
        {
            node.Properties = [.. list];
        }
        else
        {
            node.MapKey = _builder.FreeString();
            node.MapValue = additionalSchema ? Compile(additional, path + "/additionalProperties") : _builder.AnyValue();
            if (node.MapValue < 0)
            {
                node.MapValue = -1;
                node.Properties = [];
            }
        }

        return _builder.Add(node);
    }

    private int CompileArray(JsonElement schema, string path)
    {
        var node = new GrammarNode(NodeKind.Array, path)
        {
            MinItems = Count(schema, "minItems", path) ?? 0,
            MaxItems = Count(schema, "maxItems", path) ?? int.MaxValue,
        };
        if (node.MinItems > node.MaxItems)
        {
            throw new JsonSchemaNotSupportedException("minItems", path, $"minItems {node.MinItems} is larger than maxItems {node.MaxItems}.");
        }

        if (!schema.TryGetProperty("items", out JsonElement items) || items.ValueKind == JsonValueKind.True)
        {
            node.Items = _builder.AnyValue();
        }
        else if (items.ValueKind == JsonValueKind.Object || items.ValueKind == JsonValueKind.False)
        {
            int item = Compile(items, path + "/items");
            if (item < 0)
            {
                // items: false allows only the empty array.
                if (node.MinItems > 0)
                {
                    throw new JsonSchemaNotSupportedException("items", path, "items is false but minItems is above 0, so no array satisfies the schema.");
                }

                item = _builder.AnyValue();
                node.MaxItems = 0;
            }

            node.Items = item;
        }
        else
        {
            throw new JsonSchemaNotSupportedException("items", path, "an array of item schemas (a tuple) is not supported; use one schema for every item.");
        }

        return _builder.Add(node);
    }

    private int CompileString(JsonElement schema, string path)
    {
        var node = new GrammarNode(NodeKind.String, path)
        {
            MinChars = Count(schema, "minLength", path) ?? 0,
            MaxChars = Count(schema, "maxLength", path) ?? int.MaxValue,
        };
        if (node.MinChars > node.MaxChars)
        {
            throw new JsonSchemaNotSupportedException("minLength", path, $"minLength {node.MinChars} is larger than maxLength {node.MaxChars}.");
        }

        if (schema.TryGetProperty("format", out JsonElement format))
        {
            string name = format.ValueKind == JsonValueKind.String ? format.GetString()! : "";
            node.Format = StringFormat.Get(name) ?? throw new JsonSchemaNotSupportedException("format", path,
                $"format '{name}' cannot be enforced; supported formats are {string.Join(", ", StringFormat.Supported)}. Remove it, or use a plain string and validate it afterwards.");
            if (node.Format.Length < node.MinChars || node.Format.Length > node.MaxChars)
            {
                throw new JsonSchemaNotSupportedException("format", path, $"format '{name}' values are {node.Format.Length} characters, outside minLength/maxLength.");
            }
        }

        return _builder.Add(node);
    }

    private int CompileNumber(JsonElement schema, string path, bool integer)
    {
        decimal? min = Bound(schema, "minimum", path), max = Bound(schema, "maximum", path);
        decimal? exMin = Bound(schema, "exclusiveMinimum", path), exMax = Bound(schema, "exclusiveMaximum", path);
        bool minExclusive = exMin is decimal em && (min is not decimal m || em >= m);
        bool maxExclusive = exMax is decimal eM && (max is not decimal M || eM <= M);
        NumberRange range = NumberRange.Create(integer, minExclusive ? exMin : min, minExclusive, maxExclusive ? exMax : max, maxExclusive)
            ?? throw new JsonSchemaNotSupportedException(min is null && exMin is null ? "maximum" : "minimum", path,
                $"no {(integer ? "integer" : "number")} with at most {18 - (integer ? 0 : NumberRange.DefaultFractionDigits)} integer digits lies within the bounds.");
        return _builder.Add(new GrammarNode(NodeKind.Number, path) { Range = range });
    }

    private int CompileEnum(JsonElement schema, JsonElement values, HashSet<string> types, string path)
    {
        string keyword = schema.TryGetProperty("enum", out _) ? "enum" : "const";
        if (schema.TryGetProperty("enum", out _) && schema.TryGetProperty("const", out _))
        {
            throw new JsonSchemaNotSupportedException("const", path, "enum and const together are not supported; keep one.");
        }

        if (schema.TryGetProperty("format", out _))
        {
            throw new JsonSchemaNotSupportedException("format", path, "format next to enum/const is not supported; the listed values are exact already.");
        }

        IEnumerable<JsonElement> candidates = keyword == "const" ? [values]
            : values.ValueKind == JsonValueKind.Array ? values.EnumerateArray()
            : throw new JsonSchemaNotSupportedException("enum", path, "it must be an array of values.");
        var literals = new List<byte[]>();
        foreach (JsonElement v in candidates)
        {
            // Values the sibling assertions (type, length, bounds) rule out can never be valid, so they are not offered.
            if (Fits(schema, v, types))
            {
                byte[] text = Encoding.UTF8.GetBytes(JsonText.Compact(v));
                if (!literals.Any(l => l.AsSpan().SequenceEqual(text)))
                {
                    literals.Add(text);
                }
            }
        }

        return literals.Count > 0
            ? _builder.Literals(path, literals)
            : throw new JsonSchemaNotSupportedException(keyword, path, "no listed value satisfies the other keywords of the schema.");
    }

    private static bool Fits(JsonElement schema, JsonElement v, HashSet<string> types)
    {
        string kind = v.ValueKind switch
        {
            JsonValueKind.Object => "object",
            JsonValueKind.Array => "array",
            JsonValueKind.String => "string",
            JsonValueKind.Number => v.TryGetDecimal(out decimal d) && d == Math.Floor(d) ? "integer" : "number",
            JsonValueKind.True or JsonValueKind.False => "boolean",
            _ => "null",
        };
        if (schema.TryGetProperty("type", out _) && !types.Contains(kind) && !(kind == "integer" && types.Contains("number")))
        {
            return false;
        }

        if (v.ValueKind == JsonValueKind.String)
        {
            int length = v.GetString()!.EnumerateRunes().Count();
            if ((schema.TryGetProperty("minLength", out JsonElement minL) && minL.TryGetInt32(out int a) && length < a)
                || (schema.TryGetProperty("maxLength", out JsonElement maxL) && maxL.TryGetInt32(out int b) && length > b))
            {
                return false;
            }
        }

        if (v.ValueKind == JsonValueKind.Number && v.TryGetDecimal(out decimal x))
        {
            bool Below(string k, bool strict) => schema.TryGetProperty(k, out JsonElement e) && e.TryGetDecimal(out decimal bound) && (strict ? x <= bound : x < bound);
            bool Above(string k, bool strict) => schema.TryGetProperty(k, out JsonElement e) && e.TryGetDecimal(out decimal bound) && (strict ? x >= bound : x > bound);
            if (Below("minimum", false) || Below("exclusiveMinimum", true) || Above("maximum", false) || Above("exclusiveMaximum", true))
            {
                return false;
            }
        }

        return true;
    }

    private static int? Count(JsonElement schema, string keyword, string path)
    {
        if (!schema.TryGetProperty(keyword, out JsonElement value))
        {
            return null;
        }

        return value.ValueKind == JsonValueKind.Number && value.TryGetDecimal(out decimal d) && d >= 0 && d == Math.Floor(d)
            ? (int)Math.Min(d, int.MaxValue)
            : throw new JsonSchemaNotSupportedException(keyword, path, "it must be a non-negative integer.");
    }

    private static decimal? Bound(JsonElement schema, string keyword, string path)
    {
        if (!schema.TryGetProperty(keyword, out JsonElement value))
        {
            return null;
        }

        if (value.ValueKind != JsonValueKind.Number)
        {
            throw new JsonSchemaNotSupportedException(keyword, path, "it must be a number (the draft-4 boolean form is not supported).");
        }

        // Beyond decimal's range any bound is outside the digit caps anyway.
        return value.TryGetDecimal(out decimal d) ? d : value.GetDouble() < 0 ? decimal.MinValue : decimal.MaxValue;
    }

    private string Target(JsonElement reference, string path)
    {
        string text = reference.ValueKind == JsonValueKind.String ? reference.GetString()! : "";
        if (!text.StartsWith('#'))
        {
            throw new JsonSchemaNotSupportedException("$ref", path, $"only references inside the schema ('#/…') are supported; got '{text}'.");
        }

        return Uri.UnescapeDataString(text).TrimEnd('/') is { Length: > 0 } t ? t : "#";
    }

    private JsonElement Resolve(string pointer, string path)
    {
        JsonElement current = _document;
        foreach (string raw in pointer.Split('/').Skip(1))
        {
            string token = raw.Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal);
            if (current.ValueKind == JsonValueKind.Object && current.TryGetProperty(token, out JsonElement next))
            {
                current = next;
            }
            else if (current.ValueKind == JsonValueKind.Array && int.TryParse(token, out int index) && index >= 0 && index < current.GetArrayLength())
            {
                current = current[index];
            }
            else
            {
                throw new JsonSchemaNotSupportedException("$ref", path, $"'{pointer}' does not point into the schema.");
            }
        }

        return current;
    }

    private void CollectReferences(JsonElement element, string path)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                foreach (JsonProperty p in element.EnumerateObject())
                {
                    if (p.Name == "$ref" && p.Value.ValueKind == JsonValueKind.String && p.Value.GetString()!.StartsWith('#'))
                    {
                        _refTargets.Add(Target(p.Value, path));
                    }

                    CollectReferences(p.Value, $"{path}/{PointerEscape(p.Name)}");
                }

                break;
            case JsonValueKind.Array:
                int i = 0;
                foreach (JsonElement item in element.EnumerateArray())
                {
                    CollectReferences(item, $"{path}/{i++}");
                }

                break;
        }
    }

    private static string PointerEscape(string name) => name.Replace("~", "~0", StringComparison.Ordinal).Replace("/", "~1", StringComparison.Ordinal);
}
