using System.Text.Json;

namespace LocalMxfp4.Tokenization.Tests;

public sealed class SentencePieceTests
{
    public static TheoryData<int> Cases()
    {
        var data = new TheoryData<int>();
        for (int i = 0; i < TestTokenizers.StoriesVectors.Count; i++)
        {
            data.Add(i);
        }

        return data;
    }

    [Fact]
    public void VectorFileHas115Cases() => Assert.Equal(115, TestTokenizers.StoriesVectors.Count);

    [Fact]
    public void VocabularyAndSpecials()
    {
        LlmTokenizer tok = TestTokenizers.SentencePiece;
        Assert.Equal(TokenizerKind.SentencePiece, tok.Kind);
        Assert.Equal(512, tok.VocabularySize);
        Assert.Equal(1, tok.BeginOfSequenceId);
        Assert.Equal([2], tok.EndOfSequenceIds);
        Assert.Equal(new Dictionary<string, int> { ["<unk>"] = 0, ["<s>"] = 1, ["</s>"] = 2 }, tok.SpecialTokens);
        Assert.True(tok.IsSpecial(1));
        Assert.False(tok.IsSpecial(410));
        Assert.Equal([(byte)'\n'], tok.GetTokenBytes(13).ToArray());
        Assert.Equal(" "u8.ToArray(), tok.GetTokenBytes(410).ToArray());
    }

    /// <summary>
    /// The expected ids include SentencePiece's dummy prefix ("Lily" → "▁Lily", " " → "▁▁"), so decoding them
    /// verbatim yields a leading space; the file's "decoded" field is SentencePiece's own decode, which strips it.
    /// </summary>
    [Theory]
    [MemberData(nameof(Cases))]
    public void EncodeMatchesSentencePieceAndDecodesExactly(int index)
    {
        LlmTokenizer tok = TestTokenizers.SentencePiece;
        SentencePieceCase c = TestTokenizers.StoriesVectors[index];

        Assert.Equal(c.Ids, tok.Encode(c.Text));
        Assert.Equal(c.Ids.Length, tok.CountTokens(c.Text));

        string verbatim = c.Text.Length == 0 ? "" : " " + c.Text.Replace('\u2581', ' ');
        Assert.Equal(verbatim, tok.Decode(c.Ids));
        StreamingDetokenizer stream = tok.CreateStreamingDetokenizer();
        Assert.Equal(verbatim, string.Concat(c.Ids.Select(stream.Append)) + stream.Flush());
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void LeadingSpaceStrippingReproducesSentencePieceDecode(int index)
    {
        LlmTokenizer tok = StrippingTokenizer.Value;
        SentencePieceCase c = TestTokenizers.StoriesVectors[index];

        Assert.Equal(c.Decoded, tok.Decode(c.Ids));
        StreamingDetokenizer stream = tok.CreateStreamingDetokenizer();
        Assert.Equal(c.Decoded, string.Concat(c.Ids.Select(stream.Append)) + stream.Flush());
        stream.Reset();
        Assert.Equal(c.Decoded, string.Concat(c.Ids.Select(stream.Append)) + stream.Flush());
    }

    [Fact]
    public void ReferenceGreedyTextDecodesExactly()
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllBytes(TestTokenizers.StoriesPath("reference.json")));
        int[] greedy = doc.RootElement.GetProperty("greedy_from_bos_tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        string expected = doc.RootElement.GetProperty("greedy_text").GetString()!;
        LlmTokenizer tok = TestTokenizers.SentencePiece;

        Assert.Equal(tok.BeginOfSequenceId, greedy[0]);
        Assert.StartsWith(" Once upon a time", expected, StringComparison.Ordinal);
        Assert.Equal(expected, tok.Decode(greedy[1..]));
        Assert.Equal(expected, tok.Decode(greedy), StringComparer.Ordinal);
        Assert.Equal("<s>" + expected, tok.Decode(greedy, skipSpecialTokens: false));
        Assert.Equal(expected[1..], StrippingTokenizer.Value.Decode(greedy));
    }

    [Fact]
    public void ControlTokenTextIsPlainText()
    {
        LlmTokenizer tok = TestTokenizers.SentencePiece;
        IReadOnlyList<int> ids = tok.Encode("<s> </s>");
        Assert.DoesNotContain(1, ids);
        Assert.DoesNotContain(2, ids);
        Assert.Equal(" <s> </s>", tok.Decode(ids));
    }

    private static readonly Lazy<LlmTokenizer> StrippingTokenizer =
        new(() => LlmTokenizer.LoadSentencePiece(TestTokenizers.StoriesPath("tokenizer.model"), stripLeadingSpaceOnDecode: true));
}
