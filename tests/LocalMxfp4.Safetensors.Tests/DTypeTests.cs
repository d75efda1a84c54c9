namespace LocalMxfp4.Safetensors.Tests;

public class DTypeTests
{
    [Theory]
    [InlineData("BOOL", SafetensorsDType.Bool, 1)]
    [InlineData("U8", SafetensorsDType.U8, 1)]
    [InlineData("I8", SafetensorsDType.I8, 1)]
    [InlineData("F8_E5M2", SafetensorsDType.F8E5M2, 1)]
    [InlineData("F8_E4M3", SafetensorsDType.F8E4M3, 1)]
    [InlineData("F8_E8M0", SafetensorsDType.F8E8M0, 1)]
    [InlineData("I16", SafetensorsDType.I16, 2)]
    [InlineData("U16", SafetensorsDType.U16, 2)]
    [InlineData("F16", SafetensorsDType.F16, 2)]
    [InlineData("BF16", SafetensorsDType.BF16, 2)]
    [InlineData("I32", SafetensorsDType.I32, 4)]
    [InlineData("U32", SafetensorsDType.U32, 4)]
    [InlineData("F32", SafetensorsDType.F32, 4)]
    [InlineData("F64", SafetensorsDType.F64, 8)]
    [InlineData("I64", SafetensorsDType.I64, 8)]
    [InlineData("U64", SafetensorsDType.U64, 8)]
    public void NamesAndSizesMatchTheFormat(string name, SafetensorsDType dtype, int size)
    {
        Assert.True(SafetensorsDTypes.TryParse(name, out SafetensorsDType parsed));
        Assert.Equal(dtype, parsed);
        Assert.Equal(name, SafetensorsDTypes.ToName(dtype));
        Assert.Equal(size, SafetensorsDTypes.SizeInBytes(dtype));
        Assert.Equal(size * 8, SafetensorsDTypes.BitsPerElement(dtype));
        Assert.Equal(size * 10L, SafetensorsDTypes.ByteLength(dtype, 10));
    }

    [Fact]
    public void F4PacksTwoElementsPerByte()
    {
        Assert.True(SafetensorsDTypes.TryParse("F4", out SafetensorsDType dtype));
        Assert.Equal(SafetensorsDType.F4, dtype);
        Assert.Equal(4, SafetensorsDTypes.BitsPerElement(dtype));
        Assert.Equal(3L, SafetensorsDTypes.ByteLength(dtype, 6));
        Assert.False(SafetensorsDTypes.TryGetByteLength(dtype, 7, out _));
        Assert.Throws<ArgumentException>(() => SafetensorsDTypes.SizeInBytes(dtype));
    }

    [Theory]
    [InlineData("bf16")]
    [InlineData("F128")]
    [InlineData("")]
    [InlineData(" F32")]
    public void UnknownNamesAreRejected(string name)
    {
        Assert.False(SafetensorsDTypes.TryParse(name, out _));
    }

    [Fact]
    public void EveryEnumValueRoundTripsThroughItsName()
    {
        foreach (SafetensorsDType dtype in Enum.GetValues<SafetensorsDType>())
        {
            Assert.True(SafetensorsDTypes.TryParse(SafetensorsDTypes.ToName(dtype), out SafetensorsDType back));
            Assert.Equal(dtype, back);
        }
    }

    [Fact]
    public void ByteLengthRejectsOverflow()
    {
        Assert.False(SafetensorsDTypes.TryGetByteLength(SafetensorsDType.F64, long.MaxValue / 4, out _));
        Assert.Throws<ArgumentException>(() => SafetensorsDTypes.ByteLength(SafetensorsDType.F64, long.MaxValue / 4));
    }
}
