using System.Runtime.InteropServices;
using LocalMxfp4.Numerics;

namespace LocalMxfp4.Safetensors.Tests;

public class ConversionTests
{
    private static SafetensorsFile WriteAndOpen(TempDir dir, Action<SafetensorsWriter> fill)
    {
        var writer = new SafetensorsWriter();
        fill(writer);
        string path = dir.File(Guid.NewGuid().ToString("N") + ".safetensors");
        writer.Write(path);
        return SafetensorsFile.Open(path);
    }

    [Fact]
    public void BFloat16IsRoundedToNearestEvenAndWidenedExactly()
    {
        // 1 + 2^-8 and 1 + 3·2^-8 are exact ties between bf16 neighbours: they round to the even mantissa.
        float[] values = [1f, -2f, 0.1f, 1.00390625f, 1.01171875f, 3.4e38f, float.NegativeInfinity, -0f, 1e-40f];
        using var dir = new TempDir();
        using SafetensorsFile file = WriteAndOpen(dir, w => w.AddBFloat16("b", [values.Length], values));

        ushort[] stored = MemoryMarshal.Cast<byte, ushort>(file.GetBytes("b")).ToArray();
        Assert.Equal(values.Select(BFloat16.RoundToBits), stored);
        Assert.Equal((ushort)0x3F80, stored[3]);
        Assert.Equal((ushort)0x3F82, stored[4]);

        float[] read = file.ReadSingle("b");
        for (int i = 0; i < values.Length; i++)
        {
            Assert.Equal(BitConverter.SingleToInt32Bits(BFloat16.FromSingle(values[i]).ToSingle()), BitConverter.SingleToInt32Bits(read[i]));
        }

        Assert.Equal(0.10009765625f, read[2]);
    }

    [Fact]
    public void EveryF16BitPatternConvertsLikeHalf()
    {
        var bits = new ushort[65536];
        for (int i = 0; i < bits.Length; i++)
        {
            bits[i] = (ushort)i;
        }

        using var dir = new TempDir();
        using SafetensorsFile file = WriteAndOpen(dir, w => w.Add("h", SafetensorsDType.F16, [256, 256], MemoryMarshal.AsBytes(bits.AsSpan())));
        float[] read = file.ReadSingle("h");
        for (int i = 0; i < bits.Length; i++)
        {
            float expected = (float)BitConverter.UInt16BitsToHalf((ushort)i);
            if (float.IsNaN(expected))
            {
                Assert.True(float.IsNaN(read[i]), $"pattern 0x{i:X4}");
            }
            else
            {
                Assert.Equal(BitConverter.SingleToInt32Bits(expected), BitConverter.SingleToInt32Bits(read[i]));
            }
        }

        Assert.Equal(65504f, read[0x7BFF]);
        Assert.Equal(-2f, read[0xC000]);
    }

    [Fact]
    public void F64AndF32AreReadAsSingle()
    {
        double[] doubles = [1.5, -1e-3, 1e300, Math.PI];
        float[] floats = [0.5f, float.MaxValue, -7f];
        using var dir = new TempDir();
        using SafetensorsFile file = WriteAndOpen(dir, w =>
        {
            w.Add("d", SafetensorsDType.F64, [4], MemoryMarshal.AsBytes(doubles.AsSpan()));
            w.AddSingle("f", [3], floats);
        });

        Assert.Equal(doubles.Select(d => (float)d), file.ReadSingle("d"));
        var destination = new float[3];
        file.ReadSingle("f", destination);
        Assert.Equal(floats, destination);
    }

    [Fact]
    public void DestinationMustMatchTheElementCount()
    {
        using var dir = new TempDir();
        using SafetensorsFile file = WriteAndOpen(dir, w => w.AddSingle("f", [3], [1f, 2f, 3f]));
        var ex = Assert.Throws<ArgumentException>(() => file.ReadSingle("f", new float[4]));
        Assert.Contains("'f'", ex.Message);
        Assert.Throws<ArgumentException>(() => file.ReadSingle("f", new float[2]));
    }

    [Theory]
    [InlineData(SafetensorsDType.I32)]
    [InlineData(SafetensorsDType.U8)]
    [InlineData(SafetensorsDType.F8E4M3)]
    [InlineData(SafetensorsDType.Bool)]
    public void NonFloatDTypesAreRefusedByName(SafetensorsDType dtype)
    {
        using var dir = new TempDir();
        using SafetensorsFile file = WriteAndOpen(dir, w => w.Add("ints", dtype, [2], new byte[SafetensorsDTypes.ByteLength(dtype, 2)]));
        var ex = Assert.Throws<SafetensorsDTypeNotSupportedException>(() => file.ReadSingle("ints"));
        Assert.Equal("ints", ex.TensorName);
        Assert.Equal(dtype, ex.DType);
        Assert.Equal(file.Path, ex.FilePath);
        Assert.Contains("'ints'", ex.Message);
        Assert.Contains(SafetensorsDTypes.ToName(dtype), ex.Message);
        Assert.Contains(file.Path, ex.Message);
    }
}
