using System.Runtime.InteropServices;
using LocalMxfp4.Numerics;
using LocalMxfp4.TestSupport;

namespace LocalMxfp4.Safetensors.Tests;

/// <summary>Reads the stories260K checkpoint exported by PyTorch, in float32 and bfloat16.</summary>
public class RealModelTests
{
    private static readonly string F32Path = SharedData.Path("models", "stories260K", "model.safetensors");
    private static readonly string Bf16Path = SharedData.Path("models", "stories260K", "model.bf16.safetensors");

    [Theory]
    [InlineData("model.embed_tokens.weight", 512, 64)]
    [InlineData("model.layers.0.self_attn.q_proj.weight", 64, 64)]
    [InlineData("model.layers.0.self_attn.k_proj.weight", 32, 64)]
    [InlineData("model.layers.0.mlp.gate_proj.weight", 172, 64)]
    [InlineData("model.layers.0.mlp.down_proj.weight", 64, 172)]
    public void F32FileHasTheExpectedShapes(string name, long rows, long cols)
    {
        using SafetensorsFile file = SafetensorsFile.Open(F32Path);
        TensorInfo info = file.GetTensor(name);
        Assert.Equal(SafetensorsDType.F32, info.DType);
        Assert.Equal([rows, cols], info.Shape);
        Assert.Equal(rows * cols * 4, info.ByteLength);
        Assert.Equal(F32Path, info.FilePath);

        float[] values = file.ReadSingle(name);
        Assert.Equal(rows * cols, values.Length);
        Assert.All(values, v => Assert.True(float.IsFinite(v)));
        Assert.Contains(values, v => v != 0f);
    }

    [Fact]
    public void FilesDescribeTheSameModel()
    {
        using SafetensorsFile f32 = SafetensorsFile.Open(F32Path);
        using SafetensorsFile bf16 = SafetensorsFile.Open(Bf16Path);
        Assert.Equal("pt", f32.Metadata["format"]);
        Assert.Equal("pt", bf16.Metadata["format"]);
        Assert.Contains(f32.Tensors, t => t.Name == "model.norm.weight");
        Assert.Equal(f32.Tensors.Select(t => t.Name).Order(), bf16.Tensors.Select(t => t.Name).Order());
        Assert.All(bf16.Tensors, t => Assert.Equal(SafetensorsDType.BF16, t.DType));

        // Tensors are listed by offset and packed back to back, as PyTorch's writer lays them out.
        long expected = 0;
        foreach (TensorInfo t in f32.Tensors)
        {
            Assert.Equal(expected, t.DataOffset);
            expected += t.ByteLength;
        }

        Assert.Equal(f32.DataLength, expected);
    }

    [Fact]
    public void Bf16FileIsTheF32FileRoundedToNearestEven()
    {
        using SafetensorsFile f32 = SafetensorsFile.Open(F32Path);
        using SafetensorsFile bf16 = SafetensorsFile.Open(Bf16Path);
        long compared = 0;
        foreach (TensorInfo t in f32.Tensors)
        {
            TensorInfo b = bf16.GetTensor(t.Name);
            Assert.Equal(t.Shape, b.Shape);

            float[] full = f32.ReadSingle(t.Name);
            var rounded = new ushort[full.Length];
            BFloat16.FromSingle(full, rounded);
            Assert.Equal(rounded, MemoryMarshal.Cast<byte, ushort>(bf16.GetBytes(t.Name)).ToArray());

            float[] widened = bf16.ReadSingle(t.Name);
            for (int i = 0; i < full.Length; i++)
            {
                Assert.Equal(BFloat16.FromBits(rounded[i]).ToSingle(), widened[i]);
            }

            compared += full.Length;
        }

        Assert.True(compared > 200_000, $"only {compared} values compared");
    }

    [Fact]
    public void CheckpointOpensTheDirectoryOrAnExplicitFile()
    {
        string directory = SharedData.Path("models", "stories260K");
        using SafetensorsCheckpoint fromDirectory = SafetensorsCheckpoint.Open(directory);
        Assert.Equal(F32Path, Assert.Single(fromDirectory.Files).Path);
        Assert.Equal(fromDirectory.Files[0].DataLength, fromDirectory.TotalBytes);

        using SafetensorsCheckpoint explicitFile = SafetensorsCheckpoint.Open(Bf16Path);
        Assert.Equal(Bf16Path, Assert.Single(explicitFile.Files).Path);
        Assert.Equal(fromDirectory.TensorNames.Count, explicitFile.TensorNames.Count);
        Assert.Equal(fromDirectory.TotalBytes / 2, explicitFile.TotalBytes);
        Assert.Equal(SafetensorsDType.BF16, explicitFile.GetTensor("model.embed_tokens.weight").DType);

        float[] exact = fromDirectory.ReadSingle("model.layers.0.self_attn.q_proj.weight");
        float[] approx = explicitFile.ReadSingle("model.layers.0.self_attn.q_proj.weight");
        Assert.Equal(exact.Length, approx.Length);
        for (int i = 0; i < exact.Length; i++)
        {
            Assert.True(Math.Abs(exact[i] - approx[i]) <= Math.Abs(exact[i]) / 256f, $"element {i}");
        }
    }

    [Fact]
    public void SlicesMatchTheWholeTensor()
    {
        using SafetensorsFile file = SafetensorsFile.Open(F32Path);
        ReadOnlySpan<byte> whole = file.GetBytes("model.embed_tokens.weight");
        ReadOnlySpan<byte> row = file.GetBytes("model.embed_tokens.weight", 64 * 4 * 10, 64 * 4);
        Assert.True(row.SequenceEqual(whole.Slice(64 * 4 * 10, 64 * 4)));
    }
}
