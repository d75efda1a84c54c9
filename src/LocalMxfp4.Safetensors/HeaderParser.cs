using System.Text.Json;
using System.Text.Unicode;

namespace LocalMxfp4.Safetensors;

/// <summary>
/// Parses and validates a safetensors JSON header. A streaming reader is used instead of
/// <see cref="JsonDocument"/> because the document model silently accepts duplicate keys, and a header
/// naming one tensor twice is ambiguous about which data is meant.
/// </summary>
internal static class HeaderParser
{
    internal const string MetadataKey = "__metadata__";

    private readonly record struct RawTensor(string Name, SafetensorsDType DType, long[] Shape, long Begin, long End);

    internal static (Dictionary<string, string> Metadata, List<TensorInfo> Tensors) Parse(
        ReadOnlySpan<byte> json, long dataLength, string path)
    {
        if (!Utf8.IsValid(json))
        {
            throw new SafetensorsFormatException(path, null, "the header is not valid UTF-8.");
        }

        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        var raw = new List<RawTensor>();
        string? current = null;
        try
        {
            var reader = new Utf8JsonReader(json, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Disallow, MaxDepth = 16 });
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                throw new SafetensorsFormatException(path, null, $"the header must be a JSON object, found {Describe(reader)}.");
            }

            var seen = new HashSet<string>(StringComparer.Ordinal);
            while (Next(ref reader) != JsonTokenType.EndObject)
            {
                current = reader.GetString()!;
                if (!seen.Add(current))
                {
                    throw new SafetensorsFormatException(path, current, "the name appears more than once in the header.");
                }

                reader.Read();
                if (current == MetadataKey)
                {
                    ReadMetadata(ref reader, metadata, path);
                }
                else
                {
                    raw.Add(ReadTensor(ref reader, current, path));
                }
            }

            current = null;

            // Trailing padding spaces are fine; anything else after the object is not.
            if (reader.Read())
            {
                throw new SafetensorsFormatException(path, null, $"unexpected {reader.TokenType} after the header object.");
            }
        }
        catch (JsonException ex)
        {
            throw new SafetensorsFormatException(path, current, $"the header is not valid JSON ({ex.Message})", ex);
        }

        return (metadata, Validate(raw, dataLength, path));
    }

    private static JsonTokenType Next(ref Utf8JsonReader reader)
    {
        // With the whole buffer final, Read only returns false on truncated input, which it reports itself
        // by throwing; the guard keeps a premature end from being mistaken for a property.
        if (!reader.Read())
        {
            throw new JsonException("unexpected end of header");
        }

        return reader.TokenType;
    }

    private static void ReadMetadata(ref Utf8JsonReader reader, Dictionary<string, string> metadata, string path)
    {
        if (reader.TokenType == JsonTokenType.Null)
        {
            return;
        }

        if (reader.TokenType != JsonTokenType.StartObject)
        {
            throw new SafetensorsFormatException(path, null, $"{MetadataKey} must be an object of strings, found {Describe(reader)}.");
        }

        while (Next(ref reader) != JsonTokenType.EndObject)
        {
            string key = reader.GetString()!;
            reader.Read();
            if (reader.TokenType != JsonTokenType.String)
            {
                throw new SafetensorsFormatException(path, null, $"{MetadataKey} entry '{key}' must be a string, found {Describe(reader)}.");
            }

            if (!metadata.TryAdd(key, reader.GetString()!))
            {
                throw new SafetensorsFormatException(path, null, $"{MetadataKey} entry '{key}' appears more than once.");
            }
        }
    }

    private static RawTensor ReadTensor(ref Utf8JsonReader reader, string name, string path)
    {
        if (reader.TokenType != JsonTokenType.StartObject)
        {
            throw new SafetensorsFormatException(path, name, $"the entry must be an object with dtype, shape and data_offsets, found {Describe(reader)}.");
        }

        string? dtypeName = null;
        long[]? shape = null;
        long[]? offsets = null;
        var keys = new HashSet<string>(StringComparer.Ordinal);
        while (Next(ref reader) != JsonTokenType.EndObject)
        {
            string key = reader.GetString()!;
            if (!keys.Add(key))
            {
                throw new SafetensorsFormatException(path, name, $"the field '{key}' appears more than once.");
            }

            reader.Read();
            switch (key)
            {
                case "dtype":
                    dtypeName = reader.TokenType == JsonTokenType.String
                        ? reader.GetString()!
                        : throw new SafetensorsFormatException(path, name, $"'dtype' must be a string, found {Describe(reader)}.");
                    break;
                case "shape":
                    shape = ReadIntegers(ref reader, name, "shape", path);
                    break;
                case "data_offsets":
                    offsets = ReadIntegers(ref reader, name, "data_offsets", path);
                    if (offsets.Length != 2)
                    {
                        throw new SafetensorsFormatException(path, name, $"'data_offsets' must hold exactly two integers [begin, end], found {offsets.Length}.");
                    }

                    break;
                default:
                    // The reference implementation ignores fields it does not know; so do we.
                    reader.Skip();
                    break;
            }
        }

        if (dtypeName is null)
        {
            throw new SafetensorsFormatException(path, name, "the entry has no 'dtype'.");
        }

        if (shape is null)
        {
            throw new SafetensorsFormatException(path, name, "the entry has no 'shape'.");
        }

        if (offsets is null)
        {
            throw new SafetensorsFormatException(path, name, "the entry has no 'data_offsets'.");
        }

        if (!SafetensorsDTypes.TryParse(dtypeName, out SafetensorsDType dtype))
        {
            throw new SafetensorsFormatException(path, name, $"unknown dtype '{dtypeName}'.");
        }

        return new RawTensor(name, dtype, shape, offsets[0], offsets[1]);
    }

    private static long[] ReadIntegers(ref Utf8JsonReader reader, string name, string field, string path)
    {
        if (reader.TokenType != JsonTokenType.StartArray)
        {
            throw new SafetensorsFormatException(path, name, $"'{field}' must be an array of non-negative integers, found {Describe(reader)}.");
        }

        var values = new List<long>();
        while (Next(ref reader) != JsonTokenType.EndArray)
        {
            if (reader.TokenType != JsonTokenType.Number)
            {
                throw new SafetensorsFormatException(path, name, $"'{field}' must be an array of non-negative integers, found an element {Describe(reader)}.");
            }

            if (!reader.TryGetInt64(out long value) || value < 0)
            {
                throw new SafetensorsFormatException(path, name, $"'{field}' element {Text(reader)} is not a non-negative 64-bit integer.");
            }

            values.Add(value);
        }

        return values.ToArray();
    }

    private static List<TensorInfo> Validate(List<RawTensor> raw, long dataLength, string path)
    {
        var tensors = new List<TensorInfo>(raw.Count);
        foreach (RawTensor t in raw)
        {
            long count = 1;
            foreach (long dim in t.Shape)
            {
                if (dim != 0 && count > long.MaxValue / dim)
                {
                    throw new SafetensorsFormatException(path, t.Name, $"the element count of shape [{string.Join(", ", t.Shape)}] overflows a 64-bit integer.");
                }

                count *= dim;
            }

            if (t.Begin > t.End)
            {
                throw new SafetensorsFormatException(path, t.Name, $"data_offsets begin {t.Begin} is greater than end {t.End}.");
            }

            if (t.End > dataLength)
            {
                throw new SafetensorsFormatException(path, t.Name, $"data_offsets end {t.End} is beyond the data section, which is {dataLength} bytes.");
            }

            long span = t.End - t.Begin;
            if (!SafetensorsDTypes.TryGetByteLength(t.DType, count, out long expected) || expected != span)
            {
                string need = SafetensorsDTypes.TryGetByteLength(t.DType, count, out long e) ? $"{e} bytes" : "a byte length that does not exist";
                throw new SafetensorsFormatException(
                    path,
                    t.Name,
                    $"shape [{string.Join(", ", t.Shape)}] of {SafetensorsDTypes.ToName(t.DType)} needs {need}, but data_offsets [{t.Begin}, {t.End}] span {span}.");
            }

            tensors.Add(new TensorInfo(t.Name, t.DType, t.Shape, count, span, t.Begin, path));
        }

        // OrderBy is stable, so tensors at equal offsets keep header order and the result is deterministic.
        List<TensorInfo> ordered = tensors.OrderBy(t => t.DataOffset).ThenBy(t => t.ByteLength).ToList();
        TensorInfo? previous = null;
        foreach (TensorInfo t in ordered)
        {
            // Empty tensors own no bytes, so they cannot collide with anything.
            if (t.ByteLength == 0)
            {
                continue;
            }

            if (previous is not null && t.DataOffset < previous.DataOffset + previous.ByteLength)
            {
                throw new SafetensorsFormatException(
                    path,
                    t.Name,
                    $"its bytes [{t.DataOffset}, {t.DataOffset + t.ByteLength}) overlap tensor '{previous.Name}' at [{previous.DataOffset}, {previous.DataOffset + previous.ByteLength}).");
            }

            previous = t;
        }

        return ordered;
    }

    private static string Describe(in Utf8JsonReader reader) => reader.TokenType switch
    {
        JsonTokenType.StartObject => "an object",
        JsonTokenType.StartArray => "an array",
        JsonTokenType.String => "a string",
        JsonTokenType.Number => "a number",
        JsonTokenType.True or JsonTokenType.False => "a boolean",
        JsonTokenType.Null => "null",
        JsonTokenType.None => "nothing",
        _ => reader.TokenType.ToString(),
    };

    private static string Text(in Utf8JsonReader reader) =>
        System.Text.Encoding.UTF8.GetString(reader.ValueSpan); // the reader is over one contiguous span, never a sequence
}
