using LocalMxfp4.Engine.Loading;
using LocalMxfp4.Models.Checkpoint;
using LocalMxfp4.Safetensors;
using LocalMxfp4.TestSupport;

namespace LocalMxfp4.Engine.Tests.Models;

/// <summary>Checkpoints whose tensors contradict config.json fail at load, naming the file and tensor.</summary>
public sealed class CheckpointLoadingErrorTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("lmx-badckpt").FullName;

    public CheckpointLoadingErrorTests()
    {
        File.Copy(SharedData.Path("models", "stories260K", "config.json"), Path.Combine(_dir, "config.json"));
    }

    public void Dispose() => Directory.Delete(_dir, true);

    [Fact]
    public void MissingTensor()
    {
        WriteStoriesWith(skip: "model.layers.3.mlp.up_proj.weight");
        var e = Assert.Throws<ModelLoadException>(() => FloatModelLoader.LoadEngine(_dir));
        Assert.Equal("model.layers.3.mlp.up_proj.weight", e.TensorName);
        Assert.Contains("missing", e.Message);
    }

    [Fact]
    public void WrongShape()
    {
        WriteStoriesWith(replace: ("model.layers.0.self_attn.k_proj.weight", SafetensorsDType.F32, [64, 64], new byte[64 * 64 * 4]));
        var e = Assert.Throws<ModelLoadException>(() => FloatModelLoader.LoadEngine(_dir));
        Assert.Equal("model.layers.0.self_attn.k_proj.weight", e.TensorName);
        Assert.Contains("[64, 64]", e.Message);
        Assert.Contains("[32, 64]", e.Message);
        Assert.EndsWith("model.safetensors", e.FilePath);
    }

    [Fact]
    public void NonFloatDType()
    {
        WriteStoriesWith(replace: ("model.norm.weight", SafetensorsDType.I32, [64], new byte[64 * 4]));
        var e = Assert.Throws<ModelLoadException>(() => FloatModelLoader.LoadEngine(_dir));
        Assert.Equal("model.norm.weight", e.TensorName);
        Assert.Contains("I32", e.Message);
    }

    [Fact]
    public void UntiedConfigWithoutLmHead()
    {
        File.WriteAllText(Path.Combine(_dir, "config.json"), File.ReadAllText(Path.Combine(_dir, "config.json")).Replace("\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false"));
        WriteStoriesWith();
        var e = Assert.Throws<ModelLoadException>(() => FloatModelLoader.LoadEngine(_dir));
        Assert.Equal("lm_head.weight", e.TensorName);
    }

    [Fact]
    public void NotAModelPath()
    {
        Assert.Throws<ModelLoadException>(() => ModelDirectory.Resolve(Path.Combine(_dir, "nope")));
        File.WriteAllText(Path.Combine(_dir, "weights.bin"), "x");
        Assert.Throws<ModelLoadException>(() => ModelDirectory.Resolve(Path.Combine(_dir, "weights.bin")));
    }

    private void WriteStoriesWith(string? skip = null, (string Name, SafetensorsDType DType, long[] Shape, byte[] Data)? replace = null)
    {
        using SafetensorsFile source = SafetensorsFile.Open(SharedData.Path("models", "stories260K", "model.safetensors"));
        var writer = new SafetensorsWriter();
        foreach (TensorInfo t in source.Tensors)
        {
            if (t.Name == skip)
            {
                continue;
            }

            if (replace is { } r && r.Name == t.Name)
            {
                writer.Add(r.Name, r.DType, r.Shape, r.Data);
                continue;
            }

            writer.Add(t.Name, t.DType, t.Shape, source.GetBytes(t.Name));
        }

        writer.Write(Path.Combine(_dir, "model.safetensors"));
    }
}
