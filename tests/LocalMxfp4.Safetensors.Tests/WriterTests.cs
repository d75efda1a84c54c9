namespace LocalMxfp4.Safetensors.Tests;

public class WriterTests
{
    [Fact]
    public void WriteLeavesNoTemporaryFiles()
    {
        using var dir = new TempDir();
        var writer = new SafetensorsWriter();
        writer.AddSingle("w", [2, 2], [1f, 2f, 3f, 4f]);
        writer.Write(dir.File("out.safetensors"));
        Assert.Equal(["out.safetensors"], dir.ListFileNames());
    }

    [Fact]
    public void WriteReplacesAnExistingFile()
    {
        using var dir = new TempDir();
        string path = dir.File("out.safetensors");
        var first = new SafetensorsWriter();
        first.AddSingle("old", [1], [1f]);
        first.Write(path);

        using SafetensorsFile before = SafetensorsFile.Open(path);
        var second = new SafetensorsWriter();
        second.AddBFloat16("new", [2], [5f, 6f]);
        second.Write(path);

        using SafetensorsFile after = SafetensorsFile.Open(path);
        Assert.Equal(["new"], after.Tensors.Select(t => t.Name));
        Assert.Equal([5f, 6f], after.ReadSingle("new"));
        Assert.Equal(["out.safetensors"], dir.ListFileNames());

        // The rename swaps directory entries, so a reader that mapped the old file keeps seeing it whole.
        Assert.Equal([1f], before.ReadSingle("old"));
    }

    [Fact]
    public void WriteToMissingDirectoryFailsWithoutCreatingAnything()
    {
        using var dir = new TempDir();
        var writer = new SafetensorsWriter();
        writer.AddSingle("w", [1], [1f]);
        Assert.Throws<DirectoryNotFoundException>(() => writer.Write(Path.Combine(dir.Path, "missing", "out.safetensors")));
        Assert.Empty(Directory.GetFileSystemEntries(dir.Path));
    }

    [Fact]
    public void DuplicateNamesAreRejected()
    {
        var writer = new SafetensorsWriter();
        writer.AddSingle("w", [1], [1f]);
        var ex = Assert.Throws<ArgumentException>(() => writer.AddSingle("w", [1], [2f]));
        Assert.Contains("'w'", ex.Message);
        Assert.Equal(1, writer.Count);
    }

    [Fact]
    public void DataLengthMustMatchShapeAndDType()
    {
        var writer = new SafetensorsWriter();
        var ex = Assert.Throws<ArgumentException>(() => writer.Add("w", SafetensorsDType.F32, [2, 3], new byte[20]));
        Assert.Contains("'w'", ex.Message);
        Assert.Contains("24", ex.Message);
        Assert.Throws<ArgumentException>(() => writer.AddBFloat16("b", [4], [1f, 2f]));
        Assert.Throws<ArgumentException>(() => writer.Add("f4", SafetensorsDType.F4, [3], new byte[2]));
        Assert.Equal(0, writer.Count);
    }

    [Fact]
    public void BadShapesAndNamesAreRejected()
    {
        var writer = new SafetensorsWriter();
        Assert.Throws<ArgumentException>(() => writer.Add("neg", SafetensorsDType.U8, [-1], []));
        Assert.Throws<ArgumentException>(() => writer.Add("huge", SafetensorsDType.U8, [1L << 40, 1L << 40], []));
        Assert.Throws<ArgumentException>(() => writer.Add("__metadata__", SafetensorsDType.U8, [1], [1]));
        Assert.Throws<ArgumentException>(() => writer.Add("", SafetensorsDType.U8, [1], [1]));
    }

    [Fact]
    public void AddCopiesTheCallersBytes()
    {
        using var dir = new TempDir();
        byte[] data = [1, 2, 3];
        var writer = new SafetensorsWriter();
        writer.Add("t", SafetensorsDType.U8, [3], data);
        data[0] = 99;
        string path = dir.File("copy.safetensors");
        writer.Write(path);
        using SafetensorsFile file = SafetensorsFile.Open(path);
        Assert.Equal([1, 2, 3], file.GetBytes("t").ToArray());
    }
}
