using System.Text.Json;

namespace LocalMxfp4.Safetensors;

/// <summary>
/// A model's weights spread over one or more safetensors files: a Hugging Face sharded checkpoint
/// (<c>model.safetensors.index.json</c> plus shards), a directory holding a single
/// <c>model.safetensors</c>, or one explicitly named file. After disposal every member except
/// <see cref="Path"/>, <see cref="IndexPath"/> and <see cref="Dispose"/> throws <see cref="ObjectDisposedException"/>.
/// </summary>
public sealed class SafetensorsCheckpoint : IDisposable
{
    /// <summary>The index file name Hugging Face uses for sharded checkpoints.</summary>
    public const string IndexFileName = "model.safetensors.index.json";

    /// <summary>The file name Hugging Face uses for an unsharded checkpoint.</summary>
    public const string SingleFileName = "model.safetensors";

    private readonly Dictionary<string, (SafetensorsFile File, TensorInfo Info)> _tensors;
    private readonly List<string> _names;
    private readonly string _lookupPath;
    private readonly IReadOnlyList<SafetensorsFile> _files;
    private readonly IReadOnlyDictionary<string, string> _metadata;
    private readonly long _totalBytes;
    private bool _disposed;

    private SafetensorsCheckpoint(string path, string? indexPath, List<SafetensorsFile> files,
        Dictionary<string, (SafetensorsFile File, TensorInfo Info)> tensors, IReadOnlyDictionary<string, string> metadata)
    {
        Path = path;
        IndexPath = indexPath;
        _files = files.AsReadOnly();
        _metadata = metadata;
        _tensors = tensors;
        _lookupPath = indexPath ?? files[0].Path;

        // Names follow the data: file by file, and by offset within a file, so a sequential pass over
        // TensorNames walks each mapping front to back.
        var position = files.Select((f, i) => (f, i)).ToDictionary(p => p.f, p => p.i);
        _names = tensors
            .OrderBy(kv => position[kv.Value.File])
            .ThenBy(kv => kv.Value.Info.DataOffset)
            .Select(kv => kv.Key)
            .ToList();
        _totalBytes = tensors.Values.Sum(t => t.Info.ByteLength);
    }

    /// <summary>The full path that was opened (a directory or a file).</summary>
    public string Path { get; }

    /// <summary>The index file of a sharded checkpoint, or null for a single file.</summary>
    public string? IndexPath { get; }

    /// <summary>The opened files, shards in the order the index first names them.</summary>
    public IReadOnlyList<SafetensorsFile> Files
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _files;
        }
    }

    /// <summary>
    /// The index's <c>metadata</c> object (non-string values such as <c>total_size</c> as their JSON text),
    /// or the single file's <c>__metadata__</c>.
    /// </summary>
    public IReadOnlyDictionary<string, string> Metadata
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _metadata;
        }
    }

    /// <summary>Every tensor name of the checkpoint.</summary>
    public IReadOnlyCollection<string> TensorNames
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _names.AsReadOnly();
        }
    }

    /// <summary>Sum of the byte lengths of all tensors.</summary>
    public long TotalBytes
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _totalBytes;
        }
    }

    /// <summary>
    /// Opens a checkpoint. A directory is read through its <see cref="IndexFileName"/> when present, else
    /// its <see cref="SingleFileName"/>; a file path ending in <c>.index.json</c> is read as an index, any
    /// other file as a single safetensors file.
    /// </summary>
    /// <exception cref="FileNotFoundException">Neither the path nor the expected files exist.</exception>
    /// <exception cref="SafetensorsFormatException">The index or a file is malformed or inconsistent.</exception>
    public static SafetensorsCheckpoint Open(string directoryOrFile)
    {
        ArgumentException.ThrowIfNullOrEmpty(directoryOrFile);
        string full = System.IO.Path.GetFullPath(directoryOrFile);
        if (Directory.Exists(full))
        {
            string index = System.IO.Path.Combine(full, IndexFileName);
            if (File.Exists(index))
            {
                return OpenIndex(full, index);
            }

            string single = System.IO.Path.Combine(full, SingleFileName);
            if (File.Exists(single))
            {
                return OpenSingle(full, single);
            }

            throw new FileNotFoundException($"The directory '{full}' holds neither '{IndexFileName}' nor '{SingleFileName}'.", index);
        }

        if (!File.Exists(full))
        {
            throw new FileNotFoundException($"No checkpoint file or directory at '{full}'.", full);
        }

        return full.EndsWith(".index.json", StringComparison.OrdinalIgnoreCase)
            ? OpenIndex(full, full)
            : OpenSingle(full, full);
    }

    /// <summary>Looks a tensor up by name; the info's <see cref="TensorInfo.FilePath"/> tells the shard.</summary>
    public bool TryGetTensor(string name, out TensorInfo info)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(name);
        if (_tensors.TryGetValue(name, out var entry))
        {
            info = entry.Info;
            return true;
        }

        info = null!;
        return false;
    }

    /// <summary>Looks a tensor up by name.</summary>
    /// <exception cref="SafetensorsTensorNotFoundException">No tensor has that name.</exception>
    public TensorInfo GetTensor(string name) => Find(name).Info;

    /// <summary>The tensor's raw bytes, a view of its shard's mapping (no copy).</summary>
    /// <exception cref="SafetensorsTensorNotFoundException">No tensor has that name.</exception>
    public ReadOnlySpan<byte> GetBytes(string name) => Find(name).File.GetBytes(name);

    /// <summary>A slice of the tensor's raw bytes, for tensors too large for a single span.</summary>
    /// <exception cref="SafetensorsTensorNotFoundException">No tensor has that name.</exception>
    public ReadOnlySpan<byte> GetBytes(string name, long start, int length) => Find(name).File.GetBytes(name, start, length);

    /// <summary>Reads an F32, F16, BF16 or F64 tensor as float32 into a new array.</summary>
    /// <exception cref="SafetensorsDTypeNotSupportedException">The dtype is not a floating type this method converts.</exception>
    public float[] ReadSingle(string name) => Find(name).File.ReadSingle(name);

    /// <summary>Reads an F32, F16, BF16 or F64 tensor as float32 into <paramref name="destination"/>.</summary>
    /// <exception cref="ArgumentException"><paramref name="destination"/>'s length is not the tensor's element count.</exception>
    public void ReadSingle(string name, Span<float> destination) => Find(name).File.ReadSingle(name, destination);

    /// <summary>Unmaps every file. Safe to call more than once.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        foreach (SafetensorsFile file in _files)
        {
            file.Dispose();
        }
    }

    private (SafetensorsFile File, TensorInfo Info) Find(string name)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(name);
        return _tensors.TryGetValue(name, out var entry) ? entry : throw new SafetensorsTensorNotFoundException(_lookupPath, name);
    }

    private static SafetensorsCheckpoint OpenSingle(string path, string file)
    {
        SafetensorsFile opened = SafetensorsFile.Open(file);
        var tensors = opened.Tensors.ToDictionary(t => t.Name, t => (opened, t), StringComparer.Ordinal);
        return new SafetensorsCheckpoint(path, null, [opened], tensors, opened.Metadata);
    }

    private static SafetensorsCheckpoint OpenIndex(string path, string indexPath)
    {
        (Dictionary<string, string> metadata, List<(string Tensor, string Shard)> weightMap) = IndexReader.Read(indexPath);
        string directory = System.IO.Path.GetDirectoryName(indexPath)!;

        var files = new List<SafetensorsFile>();
        try
        {
            var byShardName = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
            var byFullPath = new Dictionary<string, SafetensorsFile>(PathComparer);
            foreach ((string tensor, string shard) in weightMap)
            {
                if (byShardName.ContainsKey(shard))
                {
                    continue;
                }

                string shardPath = ResolveShard(directory, indexPath, tensor, shard);
                if (!byFullPath.TryGetValue(shardPath, out SafetensorsFile? file))
                {
                    if (!File.Exists(shardPath))
                    {
                        throw new SafetensorsFormatException(indexPath, tensor, $"its shard '{shard}' does not exist (looked for '{shardPath}').");
                    }

                    file = SafetensorsFile.Open(shardPath);
                    files.Add(file);
                    byFullPath.Add(shardPath, file);
                }

                byShardName.Add(shard, file);
            }

            // A name stored in two listed shards makes the checkpoint ambiguous even though the index picks
            // one, because tools that merge shards would keep whichever they read last.
            var owner = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
            foreach (SafetensorsFile file in files)
            {
                foreach (TensorInfo info in file.Tensors)
                {
                    if (!owner.TryAdd(info.Name, file))
                    {
                        throw new SafetensorsFormatException(
                            indexPath, info.Name, $"the tensor is stored in two shards, '{owner[info.Name].Path}' and '{file.Path}'.");
                    }
                }
            }

            var tensors = new Dictionary<string, (SafetensorsFile, TensorInfo)>(StringComparer.Ordinal);
            foreach ((string tensor, string shard) in weightMap)
            {
                SafetensorsFile file = byShardName[shard];
                if (!file.TryGetTensor(tensor, out TensorInfo info))
                {
                    throw new SafetensorsFormatException(indexPath, tensor, $"the index places it in shard '{shard}', but '{file.Path}' does not contain it.");
                }

                tensors.Add(tensor, (file, info));
            }

            if (files.Count == 0)
            {
                throw new SafetensorsFormatException(indexPath, null, "the weight_map lists no tensors.");
            }

            return new SafetensorsCheckpoint(path, indexPath, files, tensors, metadata);
        }
        catch
        {
            foreach (SafetensorsFile file in files)
            {
                file.Dispose();
            }

            throw;
        }
    }

    private static StringComparer PathComparer => OperatingSystem.IsWindows() ? StringComparer.OrdinalIgnoreCase : StringComparer.Ordinal;

    private static string ResolveShard(string directory, string indexPath, string tensor, string shard)
    {
        if (shard.Length == 0 || shard.Contains('\0') || System.IO.Path.IsPathRooted(shard))
        {
            throw new SafetensorsFormatException(indexPath, tensor, $"shard name '{shard}' must be a relative path inside the checkpoint directory.");
        }

        string root = System.IO.Path.TrimEndingDirectorySeparator(directory) + System.IO.Path.DirectorySeparatorChar;
        string full = System.IO.Path.GetFullPath(System.IO.Path.Combine(directory, shard));
        var comparison = OperatingSystem.IsWindows() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;
        if (!full.StartsWith(root, comparison))
        {
            throw new SafetensorsFormatException(indexPath, tensor, $"shard name '{shard}' escapes the checkpoint directory '{directory}'.");
        }

        return full;
    }

    /// <summary>Reads <c>model.safetensors.index.json</c>, rejecting duplicate keys the way the header parser does.</summary>
    private static class IndexReader
    {
        internal static (Dictionary<string, string> Metadata, List<(string Tensor, string Shard)> WeightMap) Read(string indexPath)
        {
            byte[] json = File.ReadAllBytes(indexPath);
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            List<(string, string)>? weightMap = null;
            string? current = null;
            try
            {
                var reader = new Utf8JsonReader(json, new JsonReaderOptions { MaxDepth = 64 });
                if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
                {
                    throw new SafetensorsFormatException(indexPath, null, "the index must be a JSON object.");
                }

                var keys = new HashSet<string>(StringComparer.Ordinal);
                while (reader.Read() && reader.TokenType != JsonTokenType.EndObject)
                {
                    string key = reader.GetString()!;
                    if (!keys.Add(key))
                    {
                        throw new SafetensorsFormatException(indexPath, null, $"the key '{key}' appears more than once.");
                    }

                    reader.Read();
                    if (key == "metadata")
                    {
                        ReadMetadata(ref reader, metadata, indexPath);
                    }
                    else if (key == "weight_map")
                    {
                        weightMap = ReadWeightMap(ref reader, indexPath, ref current);
                    }
                    else
                    {
                        reader.Skip();
                    }
                }

                if (reader.Read())
                {
                    throw new SafetensorsFormatException(indexPath, null, $"unexpected {reader.TokenType} after the index object.");
                }
            }
            catch (JsonException ex)
            {
                throw new SafetensorsFormatException(indexPath, current, $"the index is not valid JSON ({ex.Message})", ex);
            }

            return weightMap is null
                ? throw new SafetensorsFormatException(indexPath, null, "the index has no 'weight_map' object.")
                : (metadata, weightMap);
        }

        private static void ReadMetadata(ref Utf8JsonReader reader, Dictionary<string, string> metadata, string indexPath)
        {
            if (reader.TokenType == JsonTokenType.Null)
            {
                return;
            }

            if (reader.TokenType != JsonTokenType.StartObject)
            {
                throw new SafetensorsFormatException(indexPath, null, $"'metadata' must be an object, found {reader.TokenType}.");
            }

            while (reader.Read() && reader.TokenType != JsonTokenType.EndObject)
            {
                string key = reader.GetString()!;
                reader.Read();

                // total_size is a number in Hugging Face indexes; keep non-string values as their JSON text.
                string value = reader.TokenType == JsonTokenType.String
                    ? reader.GetString()!
                    : JsonElement.ParseValue(ref reader).GetRawText();
                if (!metadata.TryAdd(key, value))
                {
                    throw new SafetensorsFormatException(indexPath, null, $"metadata key '{key}' appears more than once.");
                }
            }
        }

        private static List<(string, string)> ReadWeightMap(ref Utf8JsonReader reader, string indexPath, ref string? current)
        {
            if (reader.TokenType != JsonTokenType.StartObject)
            {
                throw new SafetensorsFormatException(indexPath, null, $"'weight_map' must be an object mapping tensor names to shard files, found {reader.TokenType}.");
            }

            var entries = new List<(string, string)>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            while (reader.Read() && reader.TokenType != JsonTokenType.EndObject)
            {
                current = reader.GetString()!;
                if (!seen.Add(current))
                {
                    throw new SafetensorsFormatException(indexPath, current, "the tensor appears more than once in weight_map.");
                }

                reader.Read();
                if (reader.TokenType != JsonTokenType.String)
                {
                    throw new SafetensorsFormatException(indexPath, current, $"its weight_map value must be a shard file name string, found {reader.TokenType}.");
                }

                entries.Add((current, reader.GetString()!));
            }

            current = null;
            return entries;
        }
    }
}
