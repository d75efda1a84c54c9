namespace LocalMxfp4.Tokenization.Tests;

public sealed class StreamingDetokenizerTests
{
    private static readonly string[] Texts =
    [
        "👨‍👩‍👧‍👦",
        "🇺🇦",
        "日本語",
        "Ünïcödé",
        "Family: 👨‍👩‍👧‍👦, flag 🇺🇦, 日本語のテキスト, Ünïcödé, Слава, مرحبا, 🦙 llama, ✅ done 😶‍🌫️!",
        "កាន់តែពិសេសអាចខលចេញ",
        "e\u0301 combining + \U0001F9D1\U0001F3FD\u200D\U0001F52C skin-tone ZWJ",
    ];

    public static TheoryData<string, int> Cases()
    {
        var data = new TheoryData<string, int>();
        foreach (string route in (string[])["tiktoken", "json", "sentencepiece"])
        {
            for (int i = 0; i < Texts.Length; i++)
            {
                data.Add(route, i);
            }
        }

        return data;
    }

    private static LlmTokenizer Get(string route) => route == "sentencepiece" ? TestTokenizers.SentencePiece : TestTokenizers.Llama3(route);

    [Theory]
    [MemberData(nameof(Cases))]
    public void OneIdAtATimeNeverBreaksCharacters(string route, int index)
    {
        LlmTokenizer tok = Get(route);
        string text = Texts[index];
        // SentencePiece's dummy prefix puts a space before the text.
        string expected = route == "sentencepiece" ? " " + text : text;
        IReadOnlyList<int> ids = tok.Encode(text);
        StreamingDetokenizer stream = tok.CreateStreamingDetokenizer();

        var pieces = ids.Select(stream.Append).ToList();
        string tail = stream.Flush();

        Assert.All(pieces, p => Assert.DoesNotContain('\uFFFD', p));
        Assert.Equal("", tail);
        Assert.Equal(expected, string.Concat(pieces));
        Assert.Equal(expected, tok.Decode(ids));
        // Every piece is valid text on its own: no lone surrogates either.
        Assert.All(pieces, p => Assert.True(System.Text.Unicode.Utf8.FromUtf16(p, new byte[p.Length * 3], out _, out _, replaceInvalidSequences: false) == System.Buffers.OperationStatus.Done));
    }

    [Theory]
    [InlineData("tiktoken")]
    [InlineData("json")]
    [InlineData("sentencepiece")]
    public void MultiTokenCharactersAreHeldBackUntilComplete(string route)
    {
        LlmTokenizer tok = Get(route);
        IReadOnlyList<int> ids = tok.Encode("👨‍👩‍👧‍👦");
        StreamingDetokenizer stream = tok.CreateStreamingDetokenizer();
        var pieces = ids.Select(stream.Append).ToList();

        // The family emoji is split inside characters by every route, so some ids must complete nothing.
        Assert.Contains("", pieces);
        Assert.True(ids.Count > 1);
    }

    [Fact]
    public void IncompleteTailBecomesReplacementOnlyAtFlush()
    {
        LlmTokenizer tok = TestTokenizers.Tiktoken;
        StreamingDetokenizer stream = tok.CreateStreamingDetokenizer();

        Assert.Equal("", stream.Append(9468)); // F0 9F: the first half of 🚀
        Assert.Equal("\uFFFD", stream.Flush());
        Assert.Equal(" Hello", stream.Append(22691));
        Assert.Equal("", stream.Flush());

        Assert.Equal("", stream.Append(9468));
        stream.Reset();
        Assert.Equal(" Hello", stream.Append(22691));

        Assert.Equal("", stream.Append(9468));
        Assert.Equal("", stream.Append(248));
        Assert.Equal("🚀", stream.Append(222));
        Assert.Equal("\uFFFD", tok.Decode([9468]));
    }

    [Fact]
    public void ByteFallbackPiecesAssembleCharacters()
    {
        LlmTokenizer tok = TestTokenizers.SentencePiece;
        // "日" = E6 97 A5 → byte pieces <0xE6> <0x97> <0xA5> (id = byte + 3).
        StreamingDetokenizer stream = tok.CreateStreamingDetokenizer();
        Assert.Equal("", stream.Append(0xE6 + 3));
        Assert.Equal("", stream.Append(0x97 + 3));
        Assert.Equal("日", stream.Append(0xA5 + 3));
        Assert.Equal([(byte)0xE6], tok.GetTokenBytes(0xE6 + 3).ToArray());
    }

    [Theory]
    [InlineData("tiktoken", false)]
    [InlineData("tiktoken", true)]
    [InlineData("json", false)]
    [InlineData("sentencepiece", false)]
    [InlineData("sentencepiece", true)]
    public void StreamingEqualsDecodeForRandomIds(string route, bool skipSpecialTokens)
    {
        LlmTokenizer tok = Get(route);
        var random = new Random(1234);
        for (int trial = 0; trial < 200; trial++)
        {
            int[] ids = new int[random.Next(0, 40)];
            for (int i = 0; i < ids.Length; i++)
            {
                // Bias towards byte-ish and special ids, where partial and invalid UTF-8 comes from.
                ids[i] = random.Next(4) switch
                {
                    0 => random.Next(0, 300),
                    1 => tok.VocabularySize - 1 - random.Next(0, Math.Min(300, tok.VocabularySize)),
                    _ => random.Next(0, tok.VocabularySize),
                };
            }

            StreamingDetokenizer stream = tok.CreateStreamingDetokenizer(skipSpecialTokens);
            string streamed = string.Concat(ids.Select(stream.Append)) + stream.Flush();
            Assert.Equal(tok.Decode(ids, skipSpecialTokens), streamed);
        }
    }
}
