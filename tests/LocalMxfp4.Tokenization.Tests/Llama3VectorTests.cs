namespace LocalMxfp4.Tokenization.Tests;

public sealed class Llama3VectorTests
{
    public static TheoryData<string, int> Cases()
    {
        var data = new TheoryData<string, int>();
        foreach (string route in (string[])["tiktoken", "json"])
        {
            for (int i = 0; i < TestTokenizers.Llama3Vectors.Count; i++)
            {
                data.Add(route, i);
            }
        }

        return data;
    }

    [Fact]
    public void VectorFileHas47Cases()
    {
        // 46 separator-terminated inputs plus the empty remainder after the last separator (an empty case, empty ids).
        Assert.Equal(47, TestTokenizers.Llama3Vectors.Count);
        Assert.Equal(("", Array.Empty<int>()), (TestTokenizers.Llama3Vectors[^1].Text, TestTokenizers.Llama3Vectors[^1].Ids));
        Assert.Equal("\n\n", TestTokenizers.Llama3Vectors[8].Text);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void EncodeMatchesReferenceAndRoundTrips(string route, int index)
    {
        LlmTokenizer tokenizer = TestTokenizers.Llama3(route);
        var (text, expected) = TestTokenizers.Llama3Vectors[index];

        IReadOnlyList<int> ids = tokenizer.Encode(text);

        Assert.Equal(expected, ids);
        Assert.Equal(expected.Length, tokenizer.CountTokens(text));
        Assert.Equal(text, tokenizer.Decode(ids));
        Assert.Equal(text, Stream(tokenizer, ids));
    }

    private static string Stream(LlmTokenizer tokenizer, IEnumerable<int> ids)
    {
        StreamingDetokenizer detokenizer = tokenizer.CreateStreamingDetokenizer();
        return string.Concat(ids.Select(detokenizer.Append)) + detokenizer.Flush();
    }
}
