using System.Diagnostics;
using System.Text;

namespace LocalMxfp4.Tokenization.Tests;

public sealed class LoadTests
{
    private static string Tiktoken => TestTokenizers.Llama3Path("tokenizer.model");

    private static string Json => TestTokenizers.Llama3Path("tokenizer.json");

    private static string Config => TestTokenizers.Llama3Path("tokenizer_config.json");

    private static string SentencePiece => TestTokenizers.StoriesPath("tokenizer.model");

    [Fact]
    public void DetectsTiktokenModel()
    {
        using var dir = new TempDirectory();
        dir.Link(Tiktoken, "tokenizer.model");
        dir.Link(Config, "tokenizer_config.json");

        LlmTokenizer tok = LlmTokenizer.Load(dir.Path);

        Assert.Equal(TokenizerKind.Tiktoken, tok.Kind);
        Assert.Equal(128256, tok.VocabularySize);
        Assert.Equal(dir.File("tokenizer.model"), tok.SourcePath);
        // 128005 keeps the config's 3.0 name; 3.1 default names would call it <|reserved_special_token_2|>.
        Assert.Equal("<|reserved_special_token_3|>", tok.GetSpecialTokenName(128005));
        Assert.Equal([9906, 1917], tok.Encode("Hello world"));
    }

    [Fact]
    public void TiktokenWithoutConfigUsesLlama31Names()
    {
        using var dir = new TempDirectory();
        dir.Link(Tiktoken, "tokenizer.model");

        LlmTokenizer tok = LlmTokenizer.Load(dir.Path);

        Assert.Equal(256, tok.SpecialTokens.Count);
        Assert.Equal("<|reserved_special_token_2|>", tok.GetSpecialTokenName(128005));
        Assert.Equal("<|reserved_special_token_247|>", tok.GetSpecialTokenName(128255));
        Assert.Equal("<|python_tag|>", tok.GetSpecialTokenName(128010));
        Assert.Equal(128000, tok.BeginOfSequenceId);
        Assert.Equal([128001, 128008, 128009], tok.EndOfSequenceIds);
    }

    [Fact]
    public void DetectsHuggingFaceJson()
    {
        using var dir = new TempDirectory();
        dir.Link(Json, "tokenizer.json");
        dir.Link(Config, "tokenizer_config.json");

        LlmTokenizer tok = LlmTokenizer.Load(dir.Path);

        Assert.Equal(TokenizerKind.HuggingFaceBpe, tok.Kind);
        Assert.Equal(128256, tok.VocabularySize);
    }

    [Fact]
    public void DetectsSentencePieceAndPrefersItOverTokenizerJson()
    {
        using var dir = new TempDirectory();
        dir.Link(SentencePiece, "tokenizer.model");
        dir.Link(Json, "tokenizer.json");

        LlmTokenizer tok = LlmTokenizer.Load(dir.Path);

        Assert.Equal(TokenizerKind.SentencePiece, tok.Kind);
        Assert.Equal(512, tok.VocabularySize);
    }

    [Fact]
    public void DetectsMetaOriginalLayoutWithConfigInParent()
    {
        using var dir = new TempDirectory();
        dir.Link(Tiktoken, "original", "tokenizer.model");
        dir.Link(Config, "tokenizer_config.json");

        LlmTokenizer tok = LlmTokenizer.Load(dir.Path);

        Assert.Equal(TokenizerKind.Tiktoken, tok.Kind);
        Assert.Equal(dir.File("original", "tokenizer.model"), tok.SourcePath);
        Assert.Equal("<|reserved_special_token_3|>", tok.GetSpecialTokenName(128005));
    }

    [Fact]
    public void TokenizerJsonComesBeforeOriginalFolder()
    {
        using var dir = new TempDirectory();
        dir.Link(Tiktoken, "original", "tokenizer.model");
        dir.Link(Json, "tokenizer.json");

        Assert.Equal(TokenizerKind.HuggingFaceBpe, LlmTokenizer.Load(dir.Path).Kind);
    }

    [Fact]
    public void UnrecognisedTokenizerModelFallsBackToJson()
    {
        using var dir = new TempDirectory();
        dir.Write("this is not a tokenizer\n", "tokenizer.model");
        dir.Link(Json, "tokenizer.json");

        Assert.Equal(TokenizerKind.HuggingFaceBpe, LlmTokenizer.Load(dir.Path).Kind);
    }

    [Fact]
    public void UnrecognisedTokenizerModelAloneIsAnError()
    {
        using var dir = new TempDirectory();
        string model = dir.Write("this is not a tokenizer\n", "tokenizer.model");

        var ex = Assert.Throws<TokenizerLoadException>(() => LlmTokenizer.Load(dir.Path));
        Assert.Equal(model, ex.FilePath);
        Assert.Contains(model, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void EmptyOrMissingDirectoryIsAnError()
    {
        using var dir = new TempDirectory();
        var ex = Assert.Throws<TokenizerLoadException>(() => LlmTokenizer.Load(dir.Path));
        Assert.Equal(dir.Path, ex.FilePath);
        Assert.Contains("tokenizer.json", ex.Message, StringComparison.Ordinal);

        string missing = dir.File("nope");
        Assert.Equal(missing, Assert.Throws<TokenizerLoadException>(() => LlmTokenizer.Load(missing)).FilePath);
    }

    [Fact]
    public void MissingFilesNameTheFile()
    {
        using var dir = new TempDirectory();
        foreach (Func<string, LlmTokenizer> load in (Func<string, LlmTokenizer>[])
                 [p => LlmTokenizer.LoadTiktoken(p), LlmTokenizer.LoadHuggingFaceJson, p => LlmTokenizer.LoadSentencePiece(p)])
        {
            string path = dir.File("absent.file");
            var ex = Assert.Throws<TokenizerLoadException>(() => load(path));
            Assert.Equal(path, ex.FilePath);
            Assert.Contains(path, ex.Message, StringComparison.Ordinal);
            Assert.Contains("not found", ex.Message, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData(57, "!!!!not-base64 56", "invalid base64")]
    [InlineData(10, "IQ== ten", "rank")]
    [InlineData(3, "IQ==", "expected '<base64 token> <rank>'")]
    [InlineData(4, "IQ== -4", "rank")]
    [InlineData(99, "IQ== 5", "rank 5 appears twice")]
    public void CorruptTiktokenLinesReportFileAndLine(int line, string replacement, string expectedMessage)
    {
        using var dir = new TempDirectory();
        List<string> lines = File.ReadLines(Tiktoken).Take(200).ToList();
        lines[line - 1] = replacement;
        string path = dir.Write(string.Join('\n', lines) + "\n", "tokenizer.model");

        var ex = Assert.Throws<TokenizerLoadException>(() => LlmTokenizer.LoadTiktoken(path));

        Assert.Equal(path, ex.FilePath);
        Assert.Equal(line, ex.LineNumber);
        Assert.Contains($"{path}:{line}:", ex.Message, StringComparison.Ordinal);
        Assert.Contains(expectedMessage, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void EmptyTiktokenFileIsAnError()
    {
        using var dir = new TempDirectory();
        string path = dir.Write("\n\n", "tokenizer.model");
        Assert.Equal(path, Assert.Throws<TokenizerLoadException>(() => LlmTokenizer.LoadTiktoken(path)).FilePath);
    }

    [Fact]
    public void TruncatedTokenizerJsonIsAnError()
    {
        using var dir = new TempDirectory();
        string path = dir.File("tokenizer.json");
        using (FileStream source = File.OpenRead(Json))
        {
            var head = new byte[100_000];
            source.ReadExactly(head);
            File.WriteAllBytes(path, head);
        }

        var ex = Assert.Throws<TokenizerLoadException>(() => LlmTokenizer.LoadHuggingFaceJson(path));
        Assert.Equal(path, ex.FilePath);
        Assert.Contains(path, ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("{ \"model\": { \"type\": \"BPE\", \"vocab\": { \"a\": \"zero\" }, \"merges\": [] } }", "integer id")]
    [InlineData("{ \"model\": { \"type\": \"BPE\", \"vocab\": { \"a\": 0 }, \"merges\": [ 5 ] } }", "merge 0")]
    [InlineData("{ \"model\": { \"type\": \"BPE\", \"vocab\": { \"a\": 0 }, \"merges\": [ [\"a\"] ] } }", "merge 0")]
    [InlineData("{ \"model\": { \"type\": \"Unigram\", \"vocab\": { \"a\": 0 } } }", "Unigram")]
    [InlineData("{ \"pre_tokenizer\": { \"type\": \"Metaspace\" }, \"model\": { \"type\": \"BPE\", \"byte_fallback\": true, \"vocab\": { \"a\": 0 }, \"merges\": [] } }", "byte-level")]
    [InlineData("[1, 2, 3]", "StartObject")]
    [InlineData("{ \"model\": ", "malformed")]
    [InlineData("", "malformed")]
    public void MalformedTokenizerJsonIsAnError(string content, string expectedMessage)
    {
        using var dir = new TempDirectory();
        string path = dir.Write(content, "tokenizer.json");

        var ex = Assert.Throws<TokenizerLoadException>(() => LlmTokenizer.LoadHuggingFaceJson(path));

        Assert.Equal(path, ex.FilePath);
        Assert.Contains(expectedMessage, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void MalformedTokenizerConfigNamesTheConfig()
    {
        using var dir = new TempDirectory();
        dir.Link(Tiktoken, "tokenizer.model");
        string config = dir.Write("{ \"added_tokens_decoder\": { \"x\": {} } }", "tokenizer_config.json");

        var ex = Assert.Throws<TokenizerLoadException>(() => LlmTokenizer.Load(dir.Path));
        Assert.Equal(config, ex.FilePath);

        dir.Write("{ not json", "tokenizer_config.json");
        Assert.Equal(config, Assert.Throws<TokenizerLoadException>(() => LlmTokenizer.Load(dir.Path)).FilePath);
    }

    [Theory]
    [InlineData(1000)]
    [InlineData(7000)]
    public void TruncatedSentencePieceModelIsAnError(int length)
    {
        using var dir = new TempDirectory();
        string path = dir.File("tokenizer.model");
        File.WriteAllBytes(path, File.ReadAllBytes(SentencePiece)[..length]);

        var ex = Assert.Throws<TokenizerLoadException>(() => LlmTokenizer.LoadSentencePiece(path));
        Assert.Equal(path, ex.FilePath);
        Assert.Equal(path, Assert.Throws<TokenizerLoadException>(() => LlmTokenizer.Load(dir.Path)).FilePath);
    }

    [Fact]
    public void SyntheticTiktokenVocabularyGetsLlama3SpecialsAfterItsRanks()
    {
        using var dir = new TempDirectory();
        var lines = new List<string>();
        for (int b = 0; b < 256; b++)
        {
            lines.Add($"{Convert.ToBase64String([(byte)b])} {b}");
        }

        lines.Add($"{Convert.ToBase64String("he"u8.ToArray())} 256");
        lines.Add($"{Convert.ToBase64String("ll"u8.ToArray())} 257");
        lines.Add($"{Convert.ToBase64String("hell"u8.ToArray())} 258");
        string path = dir.Write(string.Join("\r\n", lines) + "\r\n", "tokenizer.model");

        LlmTokenizer tok = LlmTokenizer.Load(dir.Path);

        Assert.Equal(259 + 256, tok.VocabularySize);
        Assert.Equal(259, tok.BeginOfSequenceId);
        Assert.Equal([260, 267, 268], tok.EndOfSequenceIds);
        Assert.Equal([258, (int)'o', (int)' ', 258], tok.Encode("hello hell"));
        Assert.Equal("héllo ✓", tok.Decode(tok.Encode("héllo ✓")));
        Assert.Equal(path, tok.SourcePath);
    }

    [Fact]
    public void MergesAsStringsOrArraysGiveTheSameTokenizer()
    {
        using var dir = new TempDirectory();
        // Byte-level spelling: ' ' is 'Ġ' (U+0120).
        var vocab = new StringBuilder();
        for (int c = 0x21; c <= 0x7E; c++)
        {
            if (c is not '"' and not '\\')
            {
                vocab.Append($"\"{(char)c}\": {c}, ");
            }
        }

        vocab.Append("\"\\\"\": 34, \"\\\\\": 92, \"Ġ\": 32, \"Ġt\": 256, \"he\": 257, \"Ġthe\": 258");
        string Make(string merges) =>
            $$"""
            { "added_tokens": [ { "id": 300, "content": "<|end|>", "special": true } ],
              "pre_tokenizer": { "type": "ByteLevel", "add_prefix_space": false, "use_regex": true },
              "decoder": { "type": "ByteLevel" },
              "model": { "type": "BPE", "vocab": { {{vocab}} }, "merges": [ {{merges}} ] } }
            """;
        string asStrings = dir.Write(Make("\"Ġ t\", \"h e\", \"Ġt he\""), "strings", "tokenizer.json");
        string asArrays = dir.Write(Make("[\"Ġ\", \"t\"], [\"h\", \"e\"], [\"Ġt\", \"he\"]"), "arrays", "tokenizer.json");

        foreach (string path in (string[])[asStrings, asArrays])
        {
            LlmTokenizer tok = LlmTokenizer.LoadHuggingFaceJson(path);
            Assert.Equal([258, 258, 256, (int)'o'], tok.Encode(" the the to"));
            Assert.Equal(301, tok.VocabularySize);
            Assert.Equal(300, tok.TryGetSpecialTokenId("<|end|>"));
            Assert.Equal(" the the to", tok.Decode([258, 258, 256, 'o', 300]));
            Assert.Equal(" the<|end|>", tok.Decode([258, 300], skipSpecialTokens: false));
        }
    }

    [Fact]
    public void LoadTimes()
    {
        var times = new List<string>();
        foreach (var (name, load) in (ValueTuple<string, Func<LlmTokenizer>>[])
                 [
                     ("tiktoken tokenizer.model", () => LlmTokenizer.LoadTiktoken(Tiktoken)),
                     ("HF tokenizer.json", () => LlmTokenizer.LoadHuggingFaceJson(Json)),
                     ("SentencePiece stories260K", () => LlmTokenizer.LoadSentencePiece(SentencePiece)),
                 ])
        {
            var watch = Stopwatch.StartNew();
            LlmTokenizer tok = load();
            long loadMs = watch.ElapsedMilliseconds;
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(20), $"{name}: {loadMs} ms");

            string text = string.Concat(Enumerable.Repeat("Once upon a time, 日本語 and 👨‍👩‍👧‍👦 met Ünïcödé at 12:30.\n", 600));
            tok.Encode(text);
            watch.Restart();
            int count = tok.Encode(text).Count;
            times.Add($"{name}: load {loadMs} ms; encode {text.Length} chars → {count} ids in {watch.Elapsed.TotalMilliseconds:F1} ms");
        }

        TestContext.Current.TestOutputHelper?.WriteLine(string.Join(Environment.NewLine, times));
        Console.WriteLine(string.Join(Environment.NewLine, times));
    }
}
