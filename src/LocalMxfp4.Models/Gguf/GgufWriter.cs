using System.Text;

namespace LocalMxfp4.Models.Gguf;

/// <summary>The ggml tensor types this project writes.</summary>
public enum GgmlType : uint
{
    /// <summary>float32.</summary>
    F32 = 0,

    /// <summary>bfloat16.</summary>
    BF16 = 30,

    /// <summary>OCP MXFP4: blocks of one E8M0 byte and 16 bytes of E2M1 nibbles (element j low, j + 16 high).</summary>
    MXFP4 = 39,
}

/// <summary>
/// Writes a GGUF v3 file (the format of llama.cpp and every engine built on it): little-endian header, typed metadata,
/// tensor descriptors (dimensions fastest first), then each tensor's bytes at 32-byte aligned offsets. Tensors are
/// added with a callback that writes their bytes, so a large model is streamed rather than held twice.
/// </summary>
public sealed class GgufWriter
{
    /// <summary>The data alignment (GGUF's default; written as <c>general.alignment</c>).</summary>
    public const int Alignment = 32;

    private readonly List<(string Key, uint Type, Action<BinaryWriter> Write)> _metadata = [];
    private readonly List<Tensor> _tensors = [];

    /// <summary>A string value.</summary>
    public void Add(string key, string value) => _metadata.Add((key, 8, w => WriteString(w, value)));

    /// <summary>A uint32 value.</summary>
    public void Add(string key, uint value) => _metadata.Add((key, 4, w => w.Write(value)));

    /// <summary>An int32 value.</summary>
    public void Add(string key, int value) => _metadata.Add((key, 5, w => w.Write(value)));

    /// <summary>A float32 value.</summary>
    public void Add(string key, float value) => _metadata.Add((key, 6, w => w.Write(value)));

    /// <summary>A bool value.</summary>
    public void Add(string key, bool value) => _metadata.Add((key, 7, w => w.Write(value)));

    /// <summary>An array of strings.</summary>
    public void Add(string key, IReadOnlyList<string> values) => _metadata.Add((key, 9, w =>
    {
        w.Write(8u);
        w.Write((ulong)values.Count);
        foreach (string v in values)
        {
            WriteString(w, v);
        }
    }));

    /// <summary>An array of int32.</summary>
    public void Add(string key, IReadOnlyList<int> values) => _metadata.Add((key, 9, w =>
    {
        w.Write(5u);
        w.Write((ulong)values.Count);
        foreach (int v in values)
        {
            w.Write(v);
        }
    }));

    /// <summary>A tensor of <paramref name="bytes"/> bytes, shape fastest dimension first, whose bytes <paramref name="write"/> produces.</summary>
    public void AddTensor(string name, GgmlType type, ulong[] shape, long bytes, Action<Stream> write) =>
        _tensors.Add(new Tensor(name, type, shape, bytes, write));

    /// <summary>Writes the file to a temporary sibling and renames it into place when complete.</summary>
    public void Write(string path)
    {
        string full = Path.GetFullPath(path);
        string temp = full + ".partial-" + Guid.NewGuid().ToString("N")[..8];
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            using (var w = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true))
            {
                w.Write(0x46554747u); // "GGUF"
                w.Write(3u);
                w.Write((ulong)_tensors.Count);
                w.Write((ulong)(_metadata.Count + 1));
                WriteString(w, "general.alignment");
                w.Write(4u);
                w.Write((uint)Alignment);
                foreach ((string key, uint type, Action<BinaryWriter> value) in _metadata)
                {
                    WriteString(w, key);
                    w.Write(type);
                    value(w);
                }

                ulong offset = 0;
                foreach (Tensor t in _tensors)
                {
                    WriteString(w, t.Name);
                    w.Write((uint)t.Shape.Length);
                    foreach (ulong d in t.Shape)
                    {
                        w.Write(d);
                    }

                    w.Write((uint)t.Type);
                    w.Write(offset);
                    offset += Pad((ulong)t.Bytes);
                }

                w.Flush();
                PadStream(stream);
                foreach (Tensor t in _tensors)
                {
                    long start = stream.Position;
                    t.Write(stream);
                    if (stream.Position - start != t.Bytes)
                    {
                        throw new InvalidOperationException($"GGUF tensor {t.Name}: {stream.Position - start} bytes written, {t.Bytes} declared.");
                    }

                    PadStream(stream);
                }
            }

            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
    }

    private static ulong Pad(ulong n) => (n + Alignment - 1) / Alignment * Alignment;

    private static void PadStream(Stream s)
    {
        long pad = (long)Pad((ulong)s.Position) - s.Position;
        for (long i = 0; i < pad; i++)
        {
            s.WriteByte(0);
        }
    }

    private static void WriteString(BinaryWriter w, string value)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(value);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    private sealed record Tensor(string Name, GgmlType Type, ulong[] Shape, long Bytes, Action<Stream> Write);
}
