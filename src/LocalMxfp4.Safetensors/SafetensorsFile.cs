using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;

namespace LocalMxfp4.Safetensors;

/// <summary>
/// One <c>.safetensors</c> file, memory-mapped read-only. The header is parsed and fully validated on
/// <see cref="Open"/>, so every later read stays inside the mapping. Reads may run concurrently; spans
/// returned by <see cref="GetBytes(string)"/> point into the mapping and must not be used after
/// <see cref="Dispose"/>, which must not race with reads. After disposal every member except
/// <see cref="Path"/> and <see cref="Dispose"/> throws <see cref="ObjectDisposedException"/>.
/// </summary>
public sealed unsafe class SafetensorsFile : IDisposable
{
    /// <summary>
    /// Largest header accepted, the same cap as the reference implementation: even models with tens of
    /// thousands of tensors stay far below it, while a corrupt length field could otherwise make the
    /// parser walk a multi-gigabyte "header".
    /// </summary>
    public const long MaxHeaderLength = 100L * 1024 * 1024;

    private readonly MemoryMappedFile _mapping;
    private readonly MemoryMappedViewAccessor _view;
    private readonly byte* _data;
    private readonly long _dataLength;
    private readonly Dictionary<string, TensorInfo> _byName;
    private readonly IReadOnlyDictionary<string, string> _metadata;
    private readonly IReadOnlyList<TensorInfo> _tensorList;
    private int _disposed;

    private SafetensorsFile(string path, MemoryMappedFile mapping, MemoryMappedViewAccessor view, byte* data, long dataLength,
        Dictionary<string, string> metadata, List<TensorInfo> tensors)
    {
        Path = path;
        _mapping = mapping;
        _view = view;
        _data = data;
        _dataLength = dataLength;
        _metadata = metadata;
        _tensorList = tensors.AsReadOnly();
        _byName = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
    }

    /// <summary>Full path of the file.</summary>
    public string Path { get; }

    /// <summary>The header's <c>__metadata__</c> entries (empty when absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata
    {
        get
        {
            ThrowIfDisposed();
            return _metadata;
        }
    }

    /// <summary>All tensors, ordered by their position in the data section.</summary>
    public IReadOnlyList<TensorInfo> Tensors
    {
        get
        {
            ThrowIfDisposed();
            return _tensorList;
        }
    }

    /// <summary>Size of the data section (everything after the header) in bytes.</summary>
    public long DataLength
    {
        get
        {
            ThrowIfDisposed();
            return _dataLength;
        }
    }

    /// <summary>Opens, maps and validates a safetensors file.</summary>
    /// <exception cref="SafetensorsFormatException">The file is truncated or its header is malformed.</exception>
    /// <exception cref="PlatformNotSupportedException">The process is big-endian; safetensors data is little-endian.</exception>
    public static SafetensorsFile Open(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!BitConverter.IsLittleEndian)
        {
            throw new PlatformNotSupportedException("Safetensors data is little-endian and is read in place; big-endian hosts are not supported.");
        }

        string fullPath = System.IO.Path.GetFullPath(path);
        var stream = new FileStream(fullPath, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, 1, FileOptions.RandomAccess);
        MemoryMappedFile? mapping = null;
        MemoryMappedViewAccessor? view = null;
        bool pointerAcquired = false;
        try
        {
            long fileLength = stream.Length;
            if (fileLength < 8)
            {
                throw new SafetensorsFormatException(fullPath, null, $"the file is truncated: {fileLength} bytes, shorter than the 8-byte header length.");
            }

            Span<byte> prefix = stackalloc byte[8];
            stream.ReadExactly(prefix);
            ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(prefix);

            // Compared as unsigned against the room left, so values near 2^64 cannot wrap around.
            if (headerLength > (ulong)(fileLength - 8))
            {
                throw new SafetensorsFormatException(fullPath, null, $"the header length {headerLength} is beyond the end of the file ({fileLength - 8} bytes follow the length field).");
            }

            if (headerLength > MaxHeaderLength)
            {
                throw new SafetensorsFormatException(fullPath, null, $"the header length {headerLength} exceeds the {MaxHeaderLength}-byte limit.");
            }

            if (headerLength < 2)
            {
                throw new SafetensorsFormatException(fullPath, null, $"the header length {headerLength} is too short to hold a JSON object.");
            }

            mapping = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
            view = mapping.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* basePointer = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref basePointer);
            pointerAcquired = true;
            byte* filePointer = basePointer + view.PointerOffset;

            long dataStart = 8 + (long)headerLength;
            long dataLength = fileLength - dataStart;
            var header = new ReadOnlySpan<byte>(filePointer + 8, (int)headerLength);
            (Dictionary<string, string> metadata, List<TensorInfo> tensors) = HeaderParser.Parse(header, dataLength, fullPath);
            return new SafetensorsFile(fullPath, mapping, view, filePointer + dataStart, dataLength, metadata, tensors);
        }
        catch
        {
            if (pointerAcquired)
            {
                view!.SafeMemoryMappedViewHandle.ReleasePointer();
            }

            view?.Dispose();
            mapping?.Dispose();
            stream.Dispose();
            throw;
        }
    }

    /// <summary>Looks a tensor up by name.</summary>
    public bool TryGetTensor(string name, out TensorInfo info)
    {
        ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(name);
        return _byName.TryGetValue(name, out info!);
    }

    /// <summary>Looks a tensor up by name.</summary>
    /// <exception cref="SafetensorsTensorNotFoundException">No tensor has that name.</exception>
    public TensorInfo GetTensor(string name) =>
        TryGetTensor(name, out TensorInfo info) ? info : throw new SafetensorsTensorNotFoundException(Path, name);

    /// <summary>The tensor's raw little-endian bytes, a view of the mapping (no copy).</summary>
    /// <exception cref="SafetensorsTensorNotFoundException">No tensor has that name.</exception>
    /// <exception cref="NotSupportedException">The tensor is 2 GiB or larger; use <see cref="GetBytes(string, long, int)"/>.</exception>
    public ReadOnlySpan<byte> GetBytes(string name)
    {
        TensorInfo info = GetTensor(name);
        if (info.ByteLength > int.MaxValue)
        {
            throw new NotSupportedException(
                $"Tensor '{name}' in '{Path}' is {info.ByteLength} bytes, more than one span can address; read it in slices with GetBytes(name, start, length).");
        }

        return new ReadOnlySpan<byte>(_data + info.DataOffset, (int)info.ByteLength);
    }

    /// <summary>A slice of the tensor's raw bytes, for tensors too large for a single span.</summary>
    /// <param name="name">The tensor.</param>
    /// <param name="start">Byte offset within the tensor.</param>
    /// <param name="length">Number of bytes.</param>
    /// <exception cref="ArgumentOutOfRangeException">The slice is not inside the tensor.</exception>
    public ReadOnlySpan<byte> GetBytes(string name, long start, int length)
    {
        TensorInfo info = GetTensor(name);
        ArgumentOutOfRangeException.ThrowIfNegative(start);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        if (start > info.ByteLength - length)
        {
            throw new ArgumentOutOfRangeException(nameof(length), $"Slice [{start}, {start + length}) is outside tensor '{name}' ({info.ByteLength} bytes) in '{Path}'.");
        }

        return new ReadOnlySpan<byte>(_data + info.DataOffset + start, length);
    }

    /// <summary>Reads an F32, F16, BF16 or F64 tensor as float32 into a new array.</summary>
    /// <exception cref="SafetensorsDTypeNotSupportedException">The dtype is not a floating type this method converts.</exception>
    public float[] ReadSingle(string name)
    {
        TensorInfo info = GetTensor(name);
        var result = new float[FloatConversion.CheckedElementCount(info)];
        ReadSingle(name, result);
        return result;
    }

    /// <summary>Reads an F32, F16, BF16 or F64 tensor as float32 into <paramref name="destination"/>.</summary>
    /// <exception cref="ArgumentException"><paramref name="destination"/>'s length is not the tensor's element count.</exception>
    /// <exception cref="SafetensorsDTypeNotSupportedException">The dtype is not a floating type this method converts.</exception>
    public void ReadSingle(string name, Span<float> destination)
    {
        TensorInfo info = GetTensor(name);
        FloatConversion.ToSingle(info, GetBytes(name), destination);
    }

    /// <summary>Unmaps the file. Safe to call more than once.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _mapping.Dispose();
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
}
