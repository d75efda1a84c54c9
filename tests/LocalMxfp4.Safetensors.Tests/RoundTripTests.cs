using System.Buffers.Binary;
using System.Text.Json;

namespace LocalMxfp4.Safetensors.Tests;

public class RoundTripTests
{
    public static TheoryData<SafetensorsDType> AllDTypes() => new(Enum.GetValues<SafetensorsDType>());

    [Theory]
    [MemberData(nameof(AllDTypes))]
    public void EveryDTypeRoundTrips(SafetensorsDType dtype)
    {
        using var dir = new TempDir();
        long[] shape = [3, 4];
        byte[] data = RawFile.RandomBytes((int)SafetensorsDTypes.ByteLength(dtype, 12), (int)dtype);
        var writer = new SafetensorsWriter();
        writer.Add("t", dtype, shape, data);
        string path = dir.File("rt.safetensors");
        writer.Write(path);

        using SafetensorsFile file = SafetensorsFile.Open(path);
        TensorInfo info = file.GetTensor("t");
        Assert.Equal("t", info.Name);
        Assert.Equal(dtype, info.DType);
        Assert.Equal(shape, info.Shape);
        Assert.Equal(12, info.ElementCount);
        Assert.Equal(data.Length, info.ByteLength);
        Assert.Equal(0, info.DataOffset);
        Assert.Equal(path, info.FilePath);
        Assert.Equal(data, file.GetBytes("t").ToArray());
    }

    [Fact]
    public void ScalarHasEmptyShapeAndOneElement()
    {
        using var dir = new TempDir();
        var writer = new SafetensorsWriter();
        writer.AddSingle("scalar", [], [3.25f]);
        string path = dir.File("s.safetensors");
        writer.Write(path);

        using SafetensorsFile file = SafetensorsFile.Open(path);
        TensorInfo info = file.GetTensor("scalar");
        Assert.Empty(info.Shape);
        Assert.Equal(1, info.ElementCount);
        Assert.Equal(4, info.ByteLength);
        Assert.Equal([3.25f], file.ReadSingle("scalar"));
    }

    [Fact]
    public void EmptyTensorsOwnNoBytes()
    {
        using var dir = new TempDir();
        var writer = new SafetensorsWriter();
        writer.Add("empty", SafetensorsDType.BF16, [0, 4], []);
        writer.AddSingle("after", [2], [1f, 2f]);
        writer.Add("empty2", SafetensorsDType.F32, [5, 0], []);
        string path = dir.File("e.safetensors");
        writer.Write(path);

        using SafetensorsFile file = SafetensorsFile.Open(path);
        TensorInfo empty = file.GetTensor("empty");
        Assert.Equal([0L, 4L], empty.Shape);
        Assert.Equal(0, empty.ElementCount);
        Assert.Equal(0, empty.ByteLength);
        Assert.True(file.GetBytes("empty").IsEmpty);
        Assert.Empty(file.ReadSingle("empty"));
        Assert.Equal([1f, 2f], file.ReadSingle("after"));
        Assert.Equal(0, file.GetTensor("empty2").ByteLength);
    }

    [Fact]
    public void FileWithOnlyEmptyTensorsHasAnEmptyDataSection()
    {
        using var dir = new TempDir();
        var writer = new SafetensorsWriter();
        writer.Add("nothing", SafetensorsDType.U8, [0], []);
        string path = dir.File("z.safetensors");
        writer.Write(path);

        using SafetensorsFile file = SafetensorsFile.Open(path);
        Assert.Equal(0, file.DataLength);
        Assert.Single(file.Tensors);
        Assert.True(file.GetBytes("nothing").IsEmpty);
    }

    [Fact]
    public void FileWithNoTensorsKeepsItsMetadata()
    {
        using var dir = new TempDir();
        var writer = new SafetensorsWriter();
        writer.Metadata["format"] = "pt";
        string path = dir.File("m.safetensors");
        writer.Write(path);

        using SafetensorsFile file = SafetensorsFile.Open(path);
        Assert.Empty(file.Tensors);
        Assert.Equal(0, file.DataLength);
        Assert.Equal("pt", file.Metadata["format"]);
    }

    [Fact]
    public void WriterLayoutIsAlignedContiguousAndInInsertionOrder()
    {
        using var dir = new TempDir();
        var writer = new SafetensorsWriter();
        writer.Metadata["format"] = "pt";
        writer.Metadata["note"] = "ünïcode \"quoted\"";
        writer.Add("z.first", SafetensorsDType.U8, [3], [1, 2, 3]);
        writer.AddSingle("a.second", [2], [1f, -1f]);
        writer.Add("m.third.ä", SafetensorsDType.I16, [1], [7, 0]);
        string path = dir.File("layout.safetensors");
        writer.Write(path);

        byte[] bytes = File.ReadAllBytes(path);
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.Equal(0ul, (8 + headerLength) % 8);

        // Parsed independently, in document order, to check what other safetensors readers will see.
        using var doc = JsonDocument.Parse(bytes.AsMemory(8, (int)headerLength));
        var names = doc.RootElement.EnumerateObject().Select(p => p.Name).ToArray();
        Assert.Equal(["__metadata__", "z.first", "a.second", "m.third.ä"], names);
        long expectedBegin = 0;
        foreach (JsonProperty p in doc.RootElement.EnumerateObject().Skip(1))
        {
            long[] offsets = p.Value.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            Assert.Equal(expectedBegin, offsets[0]);
            expectedBegin = offsets[1];
        }

        Assert.Equal(bytes.Length - 8 - (long)headerLength, expectedBegin);

        using SafetensorsFile file = SafetensorsFile.Open(path);
        Assert.Equal(["z.first", "a.second", "m.third.ä"], file.Tensors.Select(t => t.Name));
        Assert.Equal("ünïcode \"quoted\"", file.Metadata["note"]);
        Assert.Equal([7, 0], file.GetBytes("m.third.ä").ToArray());
    }

    [Fact]
    public void ReaderAcceptsSpacePaddedHeadersGapsAndUnalignedData()
    {
        using var dir = new TempDir();

        // An even header length with a one-byte gap puts the BF16 data at an odd file offset (and, since the
        // mapping is page-aligned, an odd address); a gap and trailing bytes follow it.
        string header = """{"b":{"dtype":"BF16","shape":[2],"data_offsets":[1,5]},"extra":{"dtype":"U8","shape":[1],"data_offsets":[6,7],"ignored":[1,{"x":null}]}}""" + "   ";
        if (header.Length % 2 == 1)
        {
            header += " ";
        }

        byte[] data = [0xEE, 0x80, 0x3F, 0x00, 0xC0, 0xEE, 9, 0xEE];
        string path = RawFile.Write(dir.File("gaps.safetensors"), header, data);

        using SafetensorsFile file = SafetensorsFile.Open(path);
        Assert.Equal([1f, -2f], file.ReadSingle("b"));
        Assert.Equal([(byte)9], file.GetBytes("extra").ToArray());
        Assert.Equal(["b", "extra"], file.Tensors.Select(t => t.Name));
        Assert.Empty(file.Metadata);
    }

    [Fact]
    public void TensorsAreListedByOffsetNotHeaderOrder()
    {
        using var dir = new TempDir();
        string header = """{"second":{"dtype":"U8","shape":[2],"data_offsets":[2,4]},"first":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}""";
        string path = RawFile.Write(dir.File("order.safetensors"), header, [1, 2, 3, 4]);

        using SafetensorsFile file = SafetensorsFile.Open(path);
        Assert.Equal(["first", "second"], file.Tensors.Select(t => t.Name));
        Assert.Equal([3, 4], file.GetBytes("second").ToArray());
    }

    [Fact]
    public void SlicedGetBytesReturnsPartOfATensor()
    {
        using var dir = new TempDir();
        var writer = new SafetensorsWriter();
        writer.Add("t", SafetensorsDType.U8, [6], [10, 11, 12, 13, 14, 15]);
        string path = dir.File("slice.safetensors");
        writer.Write(path);

        using SafetensorsFile file = SafetensorsFile.Open(path);
        Assert.Equal([12, 13, 14], file.GetBytes("t", 2, 3).ToArray());
        Assert.Throws<ArgumentOutOfRangeException>(() => file.GetBytes("t", 4, 3).Length);
        Assert.Throws<ArgumentOutOfRangeException>(() => file.GetBytes("t", -1, 1).Length);
    }
}
