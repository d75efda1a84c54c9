using System.Text.Json;

namespace LocalMxfp4.Safetensors.Tests;

public class CheckpointTests
{
    private static List<PendingTensor> SampleTensors() =>
    [
        new("embed", SafetensorsDType.BF16, [8, 4], RawFile.RandomBytes(64, 1)),
        new("layer.0.w", SafetensorsDType.F32, [4, 4], RawFile.RandomBytes(64, 2)),
        new("layer.0.b", SafetensorsDType.F32, [4], RawFile.RandomBytes(16, 3)),
        new("layer.1.w", SafetensorsDType.F32, [4, 4], RawFile.RandomBytes(64, 4)),
        new("big", SafetensorsDType.U8, [300], RawFile.RandomBytes(300, 5)),
        new("scalar", SafetensorsDType.F64, [], RawFile.RandomBytes(8, 6)),
        new("empty", SafetensorsDType.F16, [0], []),
    ];

    [Fact]
    public void ShardedWriteReadsBackTheSameBytes()
    {
        using var dir = new TempDir();
        List<PendingTensor> tensors = SampleTensors();
        SafetensorsWriter.WriteSharded(dir.Path, tensors, maxShardBytes: 130, new Dictionary<string, string> { ["format"] = "pt" });

        // 64+64 | 16+64 | 300 (over the limit, alone) | 8+0
        Assert.Equal(
            [
                "model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors",
                "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors", "model.safetensors.index.json",
            ],
            dir.ListFileNames());

        using SafetensorsCheckpoint checkpoint = SafetensorsCheckpoint.Open(dir.Path);
        Assert.Equal(dir.File("model.safetensors.index.json"), checkpoint.IndexPath);
        Assert.Equal(4, checkpoint.Files.Count);
        Assert.Equal(tensors.Select(t => t.Name), checkpoint.TensorNames);
        Assert.Equal(tensors.Sum(t => (long)t.Data.Length), checkpoint.TotalBytes);
        Assert.Equal(checkpoint.TotalBytes.ToString(System.Globalization.CultureInfo.InvariantCulture), checkpoint.Metadata["total_size"]);
        Assert.Equal("pt", checkpoint.Metadata["format"]);
        foreach (PendingTensor t in tensors)
        {
            TensorInfo info = checkpoint.GetTensor(t.Name);
            Assert.Equal(t.DType, info.DType);
            Assert.Equal(t.Shape, info.Shape);
            Assert.Equal(t.Data, checkpoint.GetBytes(t.Name).ToArray());
        }

        Assert.Equal(dir.File("model-00003-of-00004.safetensors"), checkpoint.GetTensor("big").FilePath);
        Assert.All(checkpoint.Files, f => Assert.Equal("pt", f.Metadata["format"]));

        using var index = JsonDocument.Parse(File.ReadAllBytes(dir.File("model.safetensors.index.json")));
        Assert.Equal(checkpoint.TotalBytes, index.RootElement.GetProperty("metadata").GetProperty("total_size").GetInt64());
        Assert.Equal("model-00002-of-00004.safetensors", index.RootElement.GetProperty("weight_map").GetProperty("layer.0.b").GetString());

        using SafetensorsCheckpoint viaIndex = SafetensorsCheckpoint.Open(dir.File("model.safetensors.index.json"));
        Assert.Equal(tensors.Count, viaIndex.TensorNames.Count);
        Assert.Equal(checkpoint.ReadSingle("layer.1.w"), viaIndex.ReadSingle("layer.1.w"));
    }

    [Fact]
    public void ShardedWriteWithALargeLimitMakesOneShard()
    {
        using var dir = new TempDir();
        SafetensorsWriter.WriteSharded(dir.Path, SampleTensors(), long.MaxValue);
        Assert.Equal(["model-00001-of-00001.safetensors", "model.safetensors.index.json"], dir.ListFileNames());
        using SafetensorsCheckpoint checkpoint = SafetensorsCheckpoint.Open(dir.Path);
        Assert.Single(checkpoint.Files);
    }

    [Fact]
    public void ShardedWriteValidatesEverythingBeforeWritingAnything()
    {
        using var dir = new TempDir();
        List<PendingTensor> tensors = SampleTensors();
        tensors.Add(new PendingTensor("bad", SafetensorsDType.F32, [3], new byte[8]));
        Assert.Throws<ArgumentException>(() => SafetensorsWriter.WriteSharded(dir.Path, tensors, 100));

        tensors = SampleTensors();
        tensors.Add(tensors[0]);
        Assert.Throws<ArgumentException>(() => SafetensorsWriter.WriteSharded(dir.Path, tensors, 100));
        Assert.Throws<ArgumentException>(() => SafetensorsWriter.WriteSharded(dir.Path, [], 100));
        Assert.Throws<ArgumentException>(() => SafetensorsWriter.WriteSharded(
            dir.Path, SampleTensors(), 100, new Dictionary<string, string> { ["total_size"] = "1" }));
        Assert.Empty(Directory.GetFileSystemEntries(dir.Path));
    }

    [Fact]
    public void ShardedRewriteReplacesFilesAndLeavesNoTemporaries()
    {
        using var dir = new TempDir();
        SafetensorsWriter.WriteSharded(dir.Path, SampleTensors(), 130);
        List<PendingTensor> second = [new("only", SafetensorsDType.U8, [2], [7, 8]), new("other", SafetensorsDType.U8, [1], [9])];
        SafetensorsWriter.WriteSharded(dir.Path, second, 1);

        Assert.DoesNotContain(dir.ListFileNames(), n => n.EndsWith(".tmp", StringComparison.Ordinal));
        using SafetensorsCheckpoint checkpoint = SafetensorsCheckpoint.Open(dir.Path);
        Assert.Equal(["only", "other"], checkpoint.TensorNames);
        Assert.Equal([7, 8], checkpoint.GetBytes("only").ToArray());
    }

    [Fact]
    public void DirectoryWithASingleFileOpensIt()
    {
        using var dir = new TempDir();
        var writer = new SafetensorsWriter();
        writer.Metadata["format"] = "pt";
        writer.AddSingle("w", [2], [1f, 2f]);
        writer.Write(dir.File("model.safetensors"));

        using SafetensorsCheckpoint checkpoint = SafetensorsCheckpoint.Open(dir.Path);
        Assert.Null(checkpoint.IndexPath);
        Assert.Single(checkpoint.Files);
        Assert.Equal(8, checkpoint.TotalBytes);
        Assert.Equal("pt", checkpoint.Metadata["format"]);
        Assert.Equal([1f, 2f], checkpoint.ReadSingle("w"));
        var destination = new float[2];
        checkpoint.ReadSingle("w", destination);
        Assert.Equal([1f, 2f], destination);
        Assert.True(checkpoint.TryGetTensor("w", out TensorInfo info));
        Assert.Equal(dir.File("model.safetensors"), info.FilePath);

        var ex = Assert.Throws<SafetensorsTensorNotFoundException>(() => checkpoint.GetTensor("missing"));
        Assert.Contains("'missing'", ex.Message);
        Assert.Contains(dir.File("model.safetensors"), ex.Message);
    }

    [Fact]
    public void DirectoryWithoutCheckpointFilesIsNotFound()
    {
        using var dir = new TempDir();
        Assert.Throws<FileNotFoundException>(() => SafetensorsCheckpoint.Open(dir.Path));
        Assert.Throws<FileNotFoundException>(() => SafetensorsCheckpoint.Open(dir.File("nope.safetensors")));
    }

    private static void WriteShard(string path, params string[] names)
    {
        var writer = new SafetensorsWriter();
        foreach (string name in names)
        {
            writer.AddSingle(name, [1], [1f]);
        }

        writer.Write(path);
    }

    private static string WriteIndex(TempDir dir, string weightMapJson) =>
        WriteIndexText(dir, "{\"metadata\":{\"total_size\":4},\"weight_map\":" + weightMapJson + "}");

    private static string WriteIndexText(TempDir dir, string json)
    {
        string path = dir.File("model.safetensors.index.json");
        File.WriteAllText(path, json);
        return path;
    }

    private static void AssertBadIndex(TempDir dir, string index, string? tensor, string fragment)
    {
        var ex = Assert.Throws<SafetensorsFormatException>(() => SafetensorsCheckpoint.Open(dir.Path));
        Assert.Equal(index, ex.FilePath);
        Assert.Contains(index, ex.Message);
        Assert.Equal(tensor, ex.TensorName);
        if (tensor is not null)
        {
            Assert.Contains($"'{tensor}'", ex.Message);
        }

        Assert.Contains(fragment, ex.Message);
    }

    [Fact]
    public void IndexPointingAtAMissingShardIsRejected()
    {
        using var dir = new TempDir();
        WriteShard(dir.File("a.safetensors"), "x");
        string index = WriteIndex(dir, """{"x":"a.safetensors","y":"b.safetensors"}""");
        AssertBadIndex(dir, index, "y", "'b.safetensors' does not exist");
    }

    [Fact]
    public void TensorMissingFromItsShardIsRejected()
    {
        using var dir = new TempDir();
        WriteShard(dir.File("a.safetensors"), "x");
        string index = WriteIndex(dir, """{"x":"a.safetensors","y":"a.safetensors"}""");
        AssertBadIndex(dir, index, "y", "does not contain it");
    }

    [Fact]
    public void TensorStoredInTwoShardsIsRejected()
    {
        using var dir = new TempDir();
        WriteShard(dir.File("a.safetensors"), "x", "shared");
        WriteShard(dir.File("b.safetensors"), "y", "shared");
        string index = WriteIndex(dir, """{"x":"a.safetensors","y":"b.safetensors","shared":"a.safetensors"}""");
        AssertBadIndex(dir, index, "shared", "two shards");
    }

    [Theory]
    [InlineData("../outside.safetensors", "escapes the checkpoint directory")]
    [InlineData("sub/../../outside.safetensors", "escapes the checkpoint directory")]
    [InlineData("/etc/passwd", "must be a relative path")]
    [InlineData("", "must be a relative path")]
    public void ShardNamesOutsideTheDirectoryAreRejected(string shard, string fragment)
    {
        using var outer = new TempDir();
        string inner = Path.Combine(outer.Path, "ckpt");
        Directory.CreateDirectory(inner);

        // The escaping target exists, so rejection cannot be mistaken for a missing-file error.
        WriteShard(outer.File("outside.safetensors"), "x");
        string index = Path.Combine(inner, "model.safetensors.index.json");
        File.WriteAllText(index, "{\"weight_map\":{\"x\":" + JsonSerializer.Serialize(shard) + "}}");

        var ex = Assert.Throws<SafetensorsFormatException>(() => SafetensorsCheckpoint.Open(inner));
        Assert.Equal(index, ex.FilePath);
        Assert.Equal("x", ex.TensorName);
        Assert.Contains(index, ex.Message);
        Assert.Contains("'x'", ex.Message);
        Assert.Contains(fragment, ex.Message);
    }

    [Fact]
    public void ShardInASubdirectoryIsAllowed()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir.File("parts"));
        WriteShard(Path.Combine(dir.Path, "parts", "a.safetensors"), "x");
        WriteIndex(dir, """{"x":"parts/./a.safetensors"}""");
        using SafetensorsCheckpoint checkpoint = SafetensorsCheckpoint.Open(dir.Path);
        Assert.Equal([1f], checkpoint.ReadSingle("x"));
    }

    [Theory]
    [InlineData("{\"weight_map\":", null, "not valid JSON")]
    [InlineData("[]", null, "must be a JSON object")]
    [InlineData("{\"metadata\":{}}", null, "no 'weight_map'")]
    [InlineData("{\"weight_map\":[\"a.safetensors\"]}", null, "'weight_map' must be an object")]
    [InlineData("{\"weight_map\":{\"x\":1}}", "x", "must be a shard file name string")]
    [InlineData("{\"weight_map\":{\"x\":\"a.safetensors\",\"x\":\"a.safetensors\"}}", "x", "more than once in weight_map")]
    [InlineData("{\"weight_map\":{}}", null, "lists no tensors")]
    [InlineData("{\"weight_map\":{\"x\":\"a.safetensors\"},\"weight_map\":{}}", null, "'weight_map' appears more than once")]
    [InlineData("{\"metadata\":5,\"weight_map\":{\"x\":\"a.safetensors\"}}", null, "'metadata' must be an object")]
    public void MalformedIndexIsRejected(string json, string? tensor, string fragment)
    {
        using var dir = new TempDir();
        WriteShard(dir.File("a.safetensors"), "x");
        string index = WriteIndexText(dir, json);
        AssertBadIndex(dir, index, tensor, fragment);
    }

    [Fact]
    public void MalformedShardIsReportedAgainstTheShard()
    {
        using var dir = new TempDir();
        string shard = RawFile.Write(dir.File("a.safetensors"), "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", new byte[4]);
        WriteIndex(dir, """{"x":"a.safetensors"}""");
        var ex = Assert.Throws<SafetensorsFormatException>(() => SafetensorsCheckpoint.Open(dir.Path));
        Assert.Equal(shard, ex.FilePath);
        Assert.Equal("x", ex.TensorName);
    }

    [Fact]
    public void MissingTensorNamesTheIndex()
    {
        using var dir = new TempDir();
        WriteShard(dir.File("a.safetensors"), "x");
        string index = WriteIndex(dir, """{"x":"a.safetensors"}""");
        using SafetensorsCheckpoint checkpoint = SafetensorsCheckpoint.Open(dir.Path);
        Assert.Equal("4", checkpoint.Metadata["total_size"]);
        Assert.False(checkpoint.TryGetTensor("y", out _));
        var ex = Assert.Throws<SafetensorsTensorNotFoundException>(() => checkpoint.GetBytes("y").Length);
        Assert.Equal(index, ex.FilePath);
        Assert.Contains(index, ex.Message);
        Assert.Contains("'y'", ex.Message);
    }
}
