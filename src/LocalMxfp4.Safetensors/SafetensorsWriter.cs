using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Encodings.Web;
using System.Text.Json;
using LocalMxfp4.Numerics;

namespace LocalMxfp4.Safetensors;

/// <summary>A tensor to be written by <see cref="SafetensorsWriter.WriteSharded"/>.</summary>
/// <param name="Name">Tensor name.</param>
/// <param name="DType">Element type.</param>
/// <param name="Shape">Dimensions, outermost first; empty for a scalar.</param>
/// <param name="Data">Little-endian element bytes, exactly shape × dtype size long.</param>
public sealed record PendingTensor(string Name, SafetensorsDType DType, long[] Shape, byte[] Data);

/// <summary>
/// Builds a safetensors file in memory and writes it atomically. Output follows the layout the reference
/// implementation produces and strictly validates: tensors in insertion order, packed back to back with
/// no gaps from offset 0, and the header padded with spaces so the data section starts on an 8-byte boundary.
/// </summary>
public sealed class SafetensorsWriter
{
    private readonly List<PendingTensor> _tensors = [];
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);

    /// <summary>Written as the header's <c>__metadata__</c> (omitted when empty), keys in ordinal order.</summary>
    public IDictionary<string, string> Metadata { get; } = new Dictionary<string, string>(StringComparer.Ordinal);

    /// <summary>Number of tensors added so far.</summary>
    public int Count => _tensors.Count;

    /// <summary>Adds a tensor, copying <paramref name="data"/>.</summary>
    /// <exception cref="ArgumentException">The name is empty, reserved or already added; a dimension is negative;
    /// or the data length is not shape × dtype size.</exception>
    public void Add(string name, SafetensorsDType dtype, IReadOnlyList<long> shape, ReadOnlySpan<byte> data)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(shape);
        long[] dims = [.. shape];
        Validate(name, dtype, dims, data.Length);
        AddValidated(new PendingTensor(name, dtype, dims, data.ToArray()));
    }

    /// <summary>Adds an F32 tensor.</summary>
    /// <exception cref="ArgumentException">As for <see cref="Add"/>.</exception>
    public void AddSingle(string name, IReadOnlyList<long> shape, ReadOnlySpan<float> data) =>
        Add(name, SafetensorsDType.F32, shape, MemoryMarshal.AsBytes(data));

    /// <summary>Adds a BF16 tensor, rounding each float to nearest even.</summary>
    /// <exception cref="ArgumentException">As for <see cref="Add"/>.</exception>
    public void AddBFloat16(string name, IReadOnlyList<long> shape, ReadOnlySpan<float> data)
    {
        var bits = new ushort[data.Length];
        BFloat16.FromSingle(data, bits);
        Add(name, SafetensorsDType.BF16, shape, MemoryMarshal.AsBytes(bits.AsSpan()));
    }

    /// <summary>
    /// Writes the file atomically: the bytes go to a temporary file in the same directory, are flushed to
    /// disk, and the temporary file is then renamed over <paramref name="path"/>, so readers see either the
    /// old file or the complete new one.
    /// </summary>
    public void Write(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string full = Path.GetFullPath(path);
        string temp = WriteTemporary(full, stream => WriteTo(stream));
        Commit(temp, full);
    }

    /// <summary>Writes the file to a stream, for callers that manage their own storage.</summary>
    public void WriteTo(Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        WriteFile(stream, _tensors, Metadata);
    }

    /// <summary>
    /// Writes a Hugging Face sharded checkpoint into <paramref name="directory"/>:
    /// <c>model-00001-of-0000K.safetensors</c>… and <c>model.safetensors.index.json</c>. Tensors are
    /// assigned to shards in order, starting a new shard when the next tensor would push the current one
    /// past <paramref name="maxShardBytes"/> (a tensor larger than the limit gets a shard of its own).
    /// Every file is written under a temporary name first; shards are renamed into place, then the index,
    /// so a reader never finds an index pointing at missing or partial shards.
    /// </summary>
    /// <param name="directory">Target directory; created when missing.</param>
    /// <param name="tensors">The tensors, in the order they should be stored.</param>
    /// <param name="maxShardBytes">Soft limit on tensor bytes per shard.</param>
    /// <param name="metadata">Copied into each shard's <c>__metadata__</c> and the index's <c>metadata</c>.</param>
    /// <exception cref="ArgumentException">No tensors, an invalid tensor, or metadata that sets <c>total_size</c>.</exception>
    public static void WriteSharded(string directory, IReadOnlyList<PendingTensor> tensors, long maxShardBytes,
        IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxShardBytes);
        if (tensors.Count == 0)
        {
            throw new ArgumentException("A sharded checkpoint needs at least one tensor.", nameof(tensors));
        }

        metadata ??= new Dictionary<string, string>();
        if (metadata.ContainsKey("total_size"))
        {
            throw new ArgumentException("'total_size' is computed from the tensors and cannot be supplied.", nameof(metadata));
        }

        var shards = new List<SafetensorsWriter>();
        var current = new SafetensorsWriter();
        long currentBytes = 0;
        var allNames = new HashSet<string>(StringComparer.Ordinal);
        long totalBytes = 0;
        foreach (PendingTensor tensor in tensors)
        {
            ArgumentNullException.ThrowIfNull(tensor);
            ArgumentNullException.ThrowIfNull(tensor.Name, nameof(tensors));
            ArgumentNullException.ThrowIfNull(tensor.Shape, nameof(tensors));
            ArgumentNullException.ThrowIfNull(tensor.Data, nameof(tensors));
            if (!allNames.Add(tensor.Name))
            {
                throw new ArgumentException($"Tensor '{tensor.Name}' is listed twice.", nameof(tensors));
            }

            Validate(tensor.Name, tensor.DType, tensor.Shape, tensor.Data.Length);
            if (current.Count > 0 && tensor.Data.Length > maxShardBytes - currentBytes)
            {
                shards.Add(current);
                current = new SafetensorsWriter();
                currentBytes = 0;
            }

            // The caller's arrays are stored, not copied: WriteSharded finishes before it returns.
            current.AddValidated(tensor with { Shape = (long[])tensor.Shape.Clone() });
            currentBytes += tensor.Data.Length;
            totalBytes += tensor.Data.Length;
        }

        shards.Add(current);

        string fullDirectory = Path.GetFullPath(directory);
        Directory.CreateDirectory(fullDirectory);
        int count = shards.Count;
        var finalNames = new List<string>(count);
        var temps = new List<(string Temp, string Final)>(count + 1);
        try
        {
            var weightMap = new List<(string Tensor, string Shard)>();
            for (int i = 0; i < count; i++)
            {
                string shardName = string.Create(CultureInfo.InvariantCulture, $"model-{i + 1:D5}-of-{count:D5}.safetensors");
                SafetensorsWriter shard = shards[i];
                foreach (KeyValuePair<string, string> kv in metadata)
                {
                    shard.Metadata[kv.Key] = kv.Value;
                }

                string final = Path.Combine(fullDirectory, shardName);
                temps.Add((WriteTemporary(final, shard.WriteTo), final));
                weightMap.AddRange(shard._tensors.Select(t => (t.Name, shardName)));
            }

            string indexPath = Path.Combine(fullDirectory, SafetensorsCheckpoint.IndexFileName);
            temps.Add((WriteTemporary(indexPath, stream => WriteIndex(stream, metadata, totalBytes, weightMap)), indexPath));

            // The index is last in the list, so it only appears once every shard it names is in place.
            while (temps.Count > 0)
            {
                Commit(temps[0].Temp, temps[0].Final);
                temps.RemoveAt(0);
            }
        }
        finally
        {
            foreach ((string temp, _) in temps)
            {
                TryDelete(temp);
            }
        }
    }

    private void AddValidated(PendingTensor tensor)
    {
        if (!_names.Add(tensor.Name))
        {
            throw new ArgumentException($"A tensor named '{tensor.Name}' was already added.", nameof(tensor));
        }

        _tensors.Add(tensor);
    }

    private static void Validate(string name, SafetensorsDType dtype, long[] shape, long byteCount)
    {
        if (name.Length == 0 || name == HeaderParser.MetadataKey)
        {
            throw new ArgumentException($"'{name}' cannot be used as a tensor name.", nameof(name));
        }

        string shapeText = string.Join(", ", shape);
        long elements = 1;
        foreach (long dim in shape)
        {
            if (dim < 0)
            {
                throw new ArgumentException($"Tensor '{name}' has a negative dimension in shape [{shapeText}].", nameof(shape));
            }

            if (dim != 0 && elements > long.MaxValue / dim)
            {
                throw new ArgumentException($"Tensor '{name}' shape [{shapeText}] has more elements than a 64-bit count holds.", nameof(shape));
            }

            elements *= dim;
        }

        if (!SafetensorsDTypes.TryGetByteLength(dtype, elements, out long expected))
        {
            throw new ArgumentException(
                $"Tensor '{name}': {elements} elements of {SafetensorsDTypes.ToName(dtype)} do not fill a whole number of bytes.", nameof(shape));
        }

        if (expected != byteCount)
        {
            throw new ArgumentException(
                $"Tensor '{name}': shape [{shapeText}] of {SafetensorsDTypes.ToName(dtype)} needs {expected} bytes, but {byteCount} were given.", nameof(shape));
        }
    }

    private static void WriteFile(Stream stream, IReadOnlyList<PendingTensor> tensors, IEnumerable<KeyValuePair<string, string>> metadata)
    {
        var json = new MemoryStream();
        using (var writer = new Utf8JsonWriter(json, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            writer.WriteStartObject();
            var entries = metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToList();
            if (entries.Count > 0)
            {
                writer.WriteStartObject(HeaderParser.MetadataKey);
                foreach (KeyValuePair<string, string> kv in entries)
                {
                    writer.WriteString(kv.Key, kv.Value);
                }

                writer.WriteEndObject();
            }

            long offset = 0;
            foreach (PendingTensor tensor in tensors)
            {
                writer.WriteStartObject(tensor.Name);
                writer.WriteString("dtype", SafetensorsDTypes.ToName(tensor.DType));
                writer.WriteStartArray("shape");
                foreach (long dim in tensor.Shape)
                {
                    writer.WriteNumberValue(dim);
                }

                writer.WriteEndArray();
                writer.WriteStartArray("data_offsets");
                writer.WriteNumberValue(offset);
                writer.WriteNumberValue(offset + tensor.Data.Length);
                writer.WriteEndArray();
                writer.WriteEndObject();
                offset += tensor.Data.Length;
            }

            writer.WriteEndObject();
        }

        // Spaces after the JSON are the padding the format allows; they put the data section on an 8-byte
        // boundary so memory-mapped readers can load any element type aligned.
        long headerLength = json.Length + ((8 - ((8 + json.Length) % 8)) % 8);
        Span<byte> prefix = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)headerLength);
        stream.Write(prefix);
        json.Position = 0;
        json.CopyTo(stream);
        for (long i = json.Length; i < headerLength; i++)
        {
            stream.WriteByte((byte)' ');
        }

        foreach (PendingTensor tensor in tensors)
        {
            stream.Write(tensor.Data);
        }
    }

    private static void WriteIndex(Stream stream, IReadOnlyDictionary<string, string> metadata, long totalBytes,
        List<(string Tensor, string Shard)> weightMap)
    {
        using var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
        writer.WriteStartObject();
        writer.WriteStartObject("metadata");
        writer.WriteNumber("total_size", totalBytes);
        foreach (KeyValuePair<string, string> kv in metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            writer.WriteString(kv.Key, kv.Value);
        }

        writer.WriteEndObject();
        writer.WriteStartObject("weight_map");
        foreach ((string tensor, string shard) in weightMap)
        {
            writer.WriteString(tensor, shard);
        }

        writer.WriteEndObject();
        writer.WriteEndObject();
    }

    private static string WriteTemporary(string finalPath, Action<Stream> write)
    {
        string directory = Path.GetDirectoryName(finalPath)!;

        // Same directory as the target so the final rename never crosses a file system; the leading dot and
        // random part keep concurrent writers and directory listings from mistaking it for a real file.
        string temp = Path.Combine(directory, $".{Path.GetFileName(finalPath)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20);
            write(stream);
            stream.Flush(flushToDisk: true);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }

        return temp;
    }

    private static void Commit(string temp, string finalPath)
    {
        try
        {
            File.Move(temp, finalPath, overwrite: true);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
            // Best effort: the original failure is the one worth reporting.
        }
        catch (UnauthorizedAccessException)
        {
            // As above.
        }
    }
}
