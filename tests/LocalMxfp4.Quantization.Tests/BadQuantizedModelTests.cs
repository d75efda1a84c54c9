using System.Text.Json.Nodes;
using LocalMxfp4.Models.Checkpoint;
using LocalMxfp4.Models.Configuration;
using LocalMxfp4.Models.Quantized;
using LocalMxfp4.Safetensors;

namespace LocalMxfp4.Quantization.Tests;

/// <summary>Every corruption of a quantized model is a typed error naming the file and tensor or field, at load.</summary>
public sealed class BadQuantizedModelTests : IClassFixture<QuantizedRtnFixture>, IDisposable
{
    private readonly string _dir;

    public BadQuantizedModelTests(QuantizedRtnFixture fixture)
    {
        _dir = QuantizerFixtures.TempDirectory("lmx-badq");
        foreach (string file in Directory.GetFiles(fixture.Directory))
        {
            File.Copy(file, Path.Combine(_dir, Path.GetFileName(file)));
        }
    }

    public void Dispose() => Directory.Delete(_dir, true);

    private string Weights => Path.Combine(_dir, "model.safetensors");

    private const string Blocks = "model.layers.1.mlp.down_proj.weight_blocks";
    private const string Scales = "model.layers.1.mlp.down_proj.weight_scales";
    private const string Transform = "model.layers.2.self_attn.qkv_input_transform";

    [Fact]
    public void MissingBlocks()
    {
        Rewrite(skip: Blocks);
        var e = Assert.Throws<ModelLoadException>(() => QuantizedModelReader.Read(_dir));
        Assert.Equal(Blocks, e.TensorName);
        Assert.Contains("missing", e.Message);
    }

    [Fact]
    public void WrongBlockCount()
    {
        Rewrite(replace: (Scales, SafetensorsDType.U8, [64, 5], new byte[64 * 5]));
        var e = Assert.Throws<ModelLoadException>(() => QuantizedModelReader.Read(_dir));
        Assert.Equal(Scales, e.TensorName);
        Assert.Contains("[64, 5]", e.Message);
        Assert.Contains("[64, 6]", e.Message);
    }

    [Fact]
    public void NaNScaleByte()
    {
        var scales = new byte[64 * 6];
        Array.Fill(scales, (byte)120);
        scales[70] = 0xFF;
        Rewrite(replace: (Scales, SafetensorsDType.U8, [64, 6], scales));
        var e = Assert.Throws<ModelLoadException>(() => QuantizedModelReader.Read(_dir));
        Assert.Equal(Scales, e.TensorName);
        Assert.Contains("row 11, block 4", e.Message);
    }

    [Fact]
    public void WrongDTypeOfPackedNibbles()
    {
        Rewrite(replace: (Blocks, SafetensorsDType.I8, [64, 6, 16], new byte[64 * 6 * 16]));
        var e = Assert.Throws<ModelLoadException>(() => QuantizedModelReader.Read(_dir));
        Assert.Contains("U8", e.Message);
    }

    [Fact]
    public void TransformOfTheWrongShape()
    {
        Rewrite(extra: (Transform, SafetensorsDType.F32, [16, 16], new byte[16 * 16 * 4]));
        var e = Assert.Throws<ModelLoadException>(() => QuantizedModelReader.Read(_dir));
        Assert.Equal(Transform, e.TensorName);
        Assert.Contains("[32, 32]", e.Message);
    }

    [Fact]
    public void TransformWithNaN()
    {
        var m = new float[32 * 32];
        m[5] = float.NaN;
        Rewrite(extra: (Transform, SafetensorsDType.F32, [32, 32], System.Runtime.InteropServices.MemoryMarshal.AsBytes(m.AsSpan()).ToArray()));
        var e = Assert.Throws<ModelLoadException>(() => QuantizedModelReader.Read(_dir));
        Assert.Contains("element 5", e.Message);
    }

    [Fact]
    public void TransformsMissingFromARotatedModel()
    {
        // Claim the RTN weights were Hadamard-rotated: the reader must demand the transforms instead of running wrong.
        string path = Path.Combine(_dir, "config.json");
        JsonNode config = JsonNode.Parse(File.ReadAllText(path))!;
        config["quantization_config"]!["method"] = "hadamard";
        File.WriteAllText(path, config.ToJsonString());
        var e = Assert.Throws<ModelLoadException>(() => QuantizedModelReader.Read(_dir));
        Assert.Equal(QuantizedTensorNames.QkvTransform(0), e.TensorName);
        Assert.Contains("hadamard", e.Message);
    }

    [Theory]
    [InlineData("method", "\"magic\"", "quantization_config.method")]
    [InlineData("block_size", "16", "quantization_config.block_size")]
    [InlineData("activation_scale_rule", "\"ceil\"", "quantization_config.activation_scale_rule")]
    [InlineData("quant_method", "\"mxfp4\"", "quantization_config.quant_method")]
    public void BadQuantizationConfig(string field, string value, string expectedField)
    {
        string path = Path.Combine(_dir, "config.json");
        JsonNode config = JsonNode.Parse(File.ReadAllText(path))!;
        config["quantization_config"]![field] = JsonNode.Parse(value);
        File.WriteAllText(path, config.ToJsonString());
        var e = Assert.Throws<ModelConfigException>(() => QuantizedModelReader.Read(_dir));
        Assert.Equal(expectedField, e.Field);
        Assert.Equal(path, e.FilePath);
    }

    [Fact]
    public void FloatModelIsNotAQuantizedModel()
    {
        var e = Assert.Throws<ModelConfigException>(() => QuantizedModelReader.Read(QuantizerFixtures.Stories));
        Assert.Equal("quantization_config", e.Field);
        Assert.False(QuantizedModelReader.IsQuantized(QuantizerFixtures.Stories));
        Assert.True(QuantizedModelReader.IsQuantized(_dir));
    }

    private void Rewrite(string? skip = null, (string Name, SafetensorsDType DType, long[] Shape, byte[] Data)? replace = null, (string Name, SafetensorsDType DType, long[] Shape, byte[] Data)? extra = null)
    {
        var writer = new SafetensorsWriter();
        using (SafetensorsFile source = SafetensorsFile.Open(Weights))
        {
            foreach (TensorInfo t in source.Tensors)
            {
                if (t.Name == skip)
                {
                    continue;
                }

                if (replace is { } r && r.Name == t.Name)
                {
                    writer.Add(r.Name, r.DType, r.Shape, r.Data);
                }
                else
                {
                    writer.Add(t.Name, t.DType, t.Shape, source.GetBytes(t.Name));
                }
            }
        }

        if (extra is { } x)
        {
            writer.Add(x.Name, x.DType, x.Shape, x.Data);
        }

        writer.Write(Weights);
    }
}

/// <summary>An RTN model of stories260K (no transforms, no calibration): the base the corruption tests start from.</summary>
public sealed class QuantizedRtnFixture : IDisposable
{
    public QuantizedRtnFixture()
    {
        Directory = Path.Combine(QuantizerFixtures.TempDirectory("lmx-rtn"), "stories-rtn");
        new ModelQuantizer(QuantizerFixtures.Options(TransformMethod.Rtn)).Run(QuantizerFixtures.Stories, Directory);
    }

    public string Directory { get; }

    public void Dispose() => System.IO.Directory.Delete(Path.GetDirectoryName(Directory)!, recursive: true);
}
