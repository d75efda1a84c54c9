using System.Text;

namespace LocalMxfp4.Safetensors.Tests;

public class MalformedFileTests
{
    private static SafetensorsFormatException AssertMalformed(string path, string? tensor, string fragment)
    {
        var ex = Assert.Throws<SafetensorsFormatException>(() => SafetensorsFile.Open(path));
        Assert.Equal(path, ex.FilePath);
        Assert.Contains(path, ex.Message);
        Assert.Equal(tensor, ex.TensorName);
        if (tensor is not null)
        {
            Assert.Contains($"'{tensor}'", ex.Message);
        }

        Assert.Contains(fragment, ex.Message);
        return ex;
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(7)]
    public void FileShorterThanTheLengthFieldIsTruncated(int length)
    {
        using var dir = new TempDir();
        string path = dir.File("short.safetensors");
        File.WriteAllBytes(path, new byte[length]);
        AssertMalformed(path, null, "truncated");
    }

    [Theory]
    [InlineData(100ul)]
    [InlineData(1ul << 63)]
    [InlineData(ulong.MaxValue)]
    [InlineData(ulong.MaxValue - 7)]
    public void HeaderLengthBeyondTheFileIsRejected(ulong headerLength)
    {
        using var dir = new TempDir();
        string path = RawFile.Write(dir.File("long.safetensors"), "{}", new byte[10], headerLength);
        AssertMalformed(path, null, "beyond the end of the file");
    }

    [Theory]
    [InlineData(0ul)]
    [InlineData(1ul)]
    public void HeaderTooShortForAnObjectIsRejected(ulong headerLength)
    {
        using var dir = new TempDir();
        string path = RawFile.Write(dir.File("tiny.safetensors"), "{}", null, headerLength);
        AssertMalformed(path, null, "too short");
    }

    [Fact]
    public void HeaderLengthAboveTheLimitIsRejected()
    {
        using var dir = new TempDir();
        string path = dir.File("huge.safetensors");
        ulong length = (ulong)SafetensorsFile.MaxHeaderLength + 1;
        RawFile.Write(path, "{}", null, length);

        // Extending the file makes it sparse, so the length is in range without writing 100 MiB.
        using (var stream = new FileStream(path, FileMode.Open, FileAccess.Write))
        {
            stream.SetLength(8 + (long)length);
        }

        AssertMalformed(path, null, "exceeds");
    }

    [Fact]
    public void HeaderThatIsNotUtf8IsRejected()
    {
        using var dir = new TempDir();
        byte[] header = Encoding.ASCII.GetBytes("{\"a?\":{}}");
        header[3] = 0xFF; // 0xFF never occurs in UTF-8
        string path = RawFile.Write(dir.File("utf8.safetensors"), header);
        AssertMalformed(path, null, "UTF-8");
    }

    // Data is 16 zero bytes unless noted; each header breaks exactly one rule.
    [Theory]
    [InlineData("[1,2]", null, "must be a JSON object")]
    [InlineData("\"text\"", null, "must be a JSON object")]
    [InlineData("{\"a\": ", "a", "not valid JSON")]
    [InlineData("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}} x", null, "not valid JSON")]
    [InlineData("{/*c*/}", null, "not valid JSON")]
    [InlineData("  ", null, "not valid JSON")]
    [InlineData("{\"a\": 5}", "a", "must be an object")]
    [InlineData("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", "a", "no 'dtype'")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", "a", "no 'shape'")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", "a", "no 'data_offsets'")]
    [InlineData("{\"a\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", "a", "'dtype' must be a string")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":\"1\",\"data_offsets\":[0,4]}}", "a", "'shape' must be an array")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", "a", "'shape' must be an array")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[[1]],\"data_offsets\":[0,4]}}", "a", "'shape' must be an array")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{\"b\":0}}}", "a", "'data_offsets' must be an array")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[\"0\",\"4\"]}}", "a", "'data_offsets' must be an array")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", "a", "exactly two")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4]}}", "a", "exactly two")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", "a", "element -1 is not a non-negative")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", "a", "element 1.5 is not a non-negative")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1e0],\"data_offsets\":[0,4]}}", "a", "element 1e0 is not")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1e30],\"data_offsets\":[0,4]}}", "a", "not a non-negative 64-bit integer")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,4]}}", "a", "not a non-negative 64-bit integer")]
    [InlineData("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[-1,0]}}", "a", "element -1 is not a non-negative")]
    [InlineData("{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[8,4]}}", "a", "begin 8 is greater than end 4")]
    [InlineData("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[16,20]}}", "a", "beyond the data section, which is 16 bytes")]
    [InlineData("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[9223372036854775806,9223372036854775807]}}", "a", "beyond the data section")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", "b", "overlap tensor 'a'")]
    [InlineData("{\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]},\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]}}", "b", "overlap tensor 'a'")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "b", "overlap tensor 'a'")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", "a", "needs 12 bytes")]
    [InlineData("{\"a\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", "a", "needs 8 bytes")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,0]}}", "a", "needs 4 bytes")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", "a", "overflows")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,8]}}", "a", "a byte length that does not exist")]
    [InlineData("{\"a\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", "a", "a byte length that does not exist")]
    [InlineData("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", "a", "more than once")]
    [InlineData("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},\"\\u0061\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", "a", "more than once")]
    [InlineData("{\"a\":{\"dtype\":\"U8\",\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[0,1]}}", "a", "'dtype' appears more than once")]
    [InlineData("{\"a\":{\"dtype\":\"F128\",\"shape\":[1],\"data_offsets\":[0,16]}}", "a", "unknown dtype 'F128'")]
    [InlineData("{\"a\":{\"dtype\":\"bf16\",\"shape\":[1],\"data_offsets\":[0,2]}}", "a", "unknown dtype 'bf16'")]
    [InlineData("{\"__metadata__\":{\"format\":1}}", null, "__metadata__ entry 'format' must be a string")]
    [InlineData("{\"__metadata__\":{\"k\":{\"x\":\"y\"}}}", null, "__metadata__ entry 'k' must be a string")]
    [InlineData("{\"__metadata__\":[\"pt\"]}", null, "__metadata__ must be an object")]
    [InlineData("{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", null, "entry 'k' appears more than once")]
    [InlineData("{\"__metadata__\":{},\"__metadata__\":{}}", "__metadata__", "more than once")]
    public void MalformedHeaderIsRejected(string header, string? tensor, string fragment)
    {
        using var dir = new TempDir();
        string path = RawFile.Write(dir.File("bad.safetensors"), header, new byte[16]);
        AssertMalformed(path, tensor, fragment);
    }

    [Fact]
    public void OverlapMessageNamesBothTensors()
    {
        using var dir = new TempDir();
        string header = "{\"first\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]},\"second\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[7,15]}}";
        string path = RawFile.Write(dir.File("overlap.safetensors"), header, new byte[16]);
        SafetensorsFormatException ex = AssertMalformed(path, "second", "'first'");
        Assert.Contains("[7, 15)", ex.Message);
    }

    [Fact]
    public void EmptyTensorsInsideAnotherRangeAreNotOverlaps()
    {
        using var dir = new TempDir();
        string header = "{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]},\"e\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,4]}}";
        string path = RawFile.Write(dir.File("empty-inside.safetensors"), header, new byte[8]);
        using SafetensorsFile file = SafetensorsFile.Open(path);
        Assert.Equal(0, file.GetTensor("e").ByteLength);
    }

    [Fact]
    public void MissingTensorIsATypedNotFoundError()
    {
        using var dir = new TempDir();
        string path = RawFile.Write(dir.File("one.safetensors"), "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", [1]);
        using SafetensorsFile file = SafetensorsFile.Open(path);
        Assert.False(file.TryGetTensor("b", out _));
        var ex = Assert.Throws<SafetensorsTensorNotFoundException>(() => file.GetTensor("b"));
        Assert.Equal(path, ex.FilePath);
        Assert.Equal("b", ex.TensorName);
        Assert.Contains(path, ex.Message);
        Assert.Contains("'b'", ex.Message);
        Assert.Throws<SafetensorsTensorNotFoundException>(() => file.GetBytes("b").Length);
        Assert.Throws<SafetensorsTensorNotFoundException>(() => file.ReadSingle("b"));
    }

    [Fact]
    public void FailedOpenReleasesTheFile()
    {
        using var dir = new TempDir();
        string path = RawFile.Write(dir.File("bad.safetensors"), "{\"a\":1}", new byte[4]);
        Assert.Throws<SafetensorsFormatException>(() => SafetensorsFile.Open(path));

        // An open file holds a shared lock, so an exclusive open succeeding proves the failed Open let go.
        string good = RawFile.Write(dir.File("good.safetensors"), "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", [1]);
        using (SafetensorsFile.Open(good))
        {
            Assert.Throws<IOException>(() => new FileStream(good, FileMode.Open, FileAccess.ReadWrite, FileShare.None).Dispose());
        }

        using var exclusive = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.None);
        Assert.True(exclusive.Length > 0);
    }
}
