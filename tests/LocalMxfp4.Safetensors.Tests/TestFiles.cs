using System.Buffers.Binary;
using System.Text;

namespace LocalMxfp4.Safetensors.Tests;

/// <summary>A unique scratch directory under the system temp folder, removed on dispose.</summary>
internal sealed class TempDir : IDisposable
{
    public TempDir()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "localmxfp4-st-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public string[] ListFileNames() =>
        Directory.GetFiles(Path).Select(f => System.IO.Path.GetFileName(f)).Order(StringComparer.Ordinal).ToArray();

    public void Dispose()
    {
        if (Directory.Exists(Path))
        {
            Directory.Delete(Path, recursive: true);
        }
    }
}

/// <summary>Hand-built safetensors bytes, for inputs the writer would refuse to produce.</summary>
internal static class RawFile
{
    public static string Write(string path, string headerJson, byte[]? data = null, ulong? headerLength = null) =>
        Write(path, Encoding.UTF8.GetBytes(headerJson), data, headerLength);

    public static string Write(string path, byte[] header, byte[]? data = null, ulong? headerLength = null)
    {
        var bytes = new byte[8 + header.Length + (data?.Length ?? 0)];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, headerLength ?? (ulong)header.Length);
        header.CopyTo(bytes, 8);
        data?.CopyTo(bytes, 8 + header.Length);
        System.IO.File.WriteAllBytes(path, bytes);
        return path;
    }

    public static byte[] RandomBytes(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }
}
