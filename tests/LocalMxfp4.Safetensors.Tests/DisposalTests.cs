namespace LocalMxfp4.Safetensors.Tests;

public class DisposalTests
{
    private static string WriteSample(TempDir dir)
    {
        var writer = new SafetensorsWriter();
        writer.AddSingle("w", [2], [1f, 2f]);
        string path = dir.File("model.safetensors");
        writer.Write(path);
        return path;
    }

    [Fact]
    public void FileDisposalIsIdempotentAndBlocksLaterUse()
    {
        using var dir = new TempDir();
        SafetensorsFile file = SafetensorsFile.Open(WriteSample(dir));
        file.Dispose();
        file.Dispose();
        Assert.Throws<ObjectDisposedException>(() => file.GetBytes("w").Length);
        Assert.Throws<ObjectDisposedException>(() => file.ReadSingle("w"));
        Assert.Throws<ObjectDisposedException>(() => file.TryGetTensor("w", out _));
        Assert.Throws<ObjectDisposedException>(() => file.GetTensor("w"));
        Assert.Throws<ObjectDisposedException>(() => file.Tensors);
        Assert.Throws<ObjectDisposedException>(() => file.Metadata);
        Assert.NotEmpty(file.Path);
    }

    [Fact]
    public void CheckpointDisposalIsIdempotentAndBlocksLaterUse()
    {
        using var dir = new TempDir();
        WriteSample(dir);
        SafetensorsCheckpoint checkpoint = SafetensorsCheckpoint.Open(dir.Path);
        SafetensorsFile file = checkpoint.Files[0];
        checkpoint.Dispose();
        checkpoint.Dispose();
        Assert.Throws<ObjectDisposedException>(() => checkpoint.GetBytes("w").Length);
        Assert.Throws<ObjectDisposedException>(() => checkpoint.ReadSingle("w"));
        Assert.Throws<ObjectDisposedException>(() => checkpoint.TensorNames);
        Assert.Throws<ObjectDisposedException>(() => checkpoint.Files);
        Assert.Throws<ObjectDisposedException>(() => checkpoint.TotalBytes);
        Assert.Throws<ObjectDisposedException>(() => file.GetTensor("w"));
    }
}
