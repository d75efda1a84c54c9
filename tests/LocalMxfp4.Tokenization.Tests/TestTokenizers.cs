using System.Text;
using System.Text.Json;
using LocalMxfp4.TestSupport;

namespace LocalMxfp4.Tokenization.Tests;

/// <summary>Shared, lazily loaded tokenizers and reference vectors (loading the BPE route takes most of a second).</summary>
internal static class TestTokenizers
{
    private static readonly Lazy<LlmTokenizer> TiktokenLazy = new(() => LlmTokenizer.LoadTiktoken(Llama3Path("tokenizer.model")));
    private static readonly Lazy<LlmTokenizer> BpeLazy = new(() => LlmTokenizer.LoadHuggingFaceJson(Llama3Path("tokenizer.json")));
    private static readonly Lazy<LlmTokenizer> SentencePieceLazy = new(() => LlmTokenizer.LoadSentencePiece(StoriesPath("tokenizer.model")));
    private static readonly Lazy<IReadOnlyList<(string Text, int[] Ids)>> Llama3VectorsLazy = new(ReadLlama3Vectors);
    private static readonly Lazy<IReadOnlyList<SentencePieceCase>> StoriesVectorsLazy = new(ReadStoriesVectors);

    public static LlmTokenizer Tiktoken => TiktokenLazy.Value;

    public static LlmTokenizer Bpe => BpeLazy.Value;

    public static LlmTokenizer SentencePiece => SentencePieceLazy.Value;

    public static LlmTokenizer Llama3(string route) => route switch
    {
        "tiktoken" => Tiktoken,
        "json" => Bpe,
        _ => throw new ArgumentOutOfRangeException(nameof(route), route, null),
    };

    public static string Llama3Path(string file) => SharedData.Path("tokenizers", "llama3", file);

    public static string StoriesPath(string file) => SharedData.Path("models", "stories260K", file);

    public static IReadOnlyList<(string Text, int[] Ids)> Llama3Vectors => Llama3VectorsLazy.Value;

    public static IReadOnlyList<SentencePieceCase> StoriesVectors => StoriesVectorsLazy.Value;

    /// <summary>
    /// llama.cpp's format: each input is followed by "\n__ggml_vocab_test__\n", so splitting on that separator
    /// leaves a final empty remainder; the .out file likewise ends with a newline after its last id line.
    /// Leading/trailing newlines inside a case belong to the case ("\n\n" is a case of its own).
    /// </summary>
    private static IReadOnlyList<(string, int[])> ReadLlama3Vectors()
    {
        string inputs = File.ReadAllText(Llama3Path("test-vectors.inp"), Encoding.UTF8);
        string outputs = File.ReadAllText(Llama3Path("test-vectors.out"), Encoding.UTF8);
        string[] texts = inputs.Split("\n__ggml_vocab_test__\n");
        string[] idLines = outputs.Split('\n');
        if (texts.Length != idLines.Length)
        {
            throw new InvalidDataException($"{texts.Length} inputs but {idLines.Length} id lines.");
        }

        var cases = new List<(string, int[])>(texts.Length);
        for (int i = 0; i < texts.Length; i++)
        {
            int[] ids = idLines[i].Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray();
            cases.Add((texts[i], ids));
        }

        return cases;
    }

    private static IReadOnlyList<SentencePieceCase> ReadStoriesVectors()
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllBytes(StoriesPath("tokenizer-test-vectors.json")));
        return doc.RootElement.GetProperty("cases").EnumerateArray()
            .Select(c => new SentencePieceCase(
                c.GetProperty("kind").GetString()!,
                c.GetProperty("text").GetString()!,
                c.GetProperty("spm_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
                c.GetProperty("decoded").GetString()!))
            .ToList();
    }
}

internal sealed record SentencePieceCase(string Kind, string Text, int[] Ids, string Decoded);

/// <summary>A temporary directory removed after the test.</summary>
internal sealed class TempDirectory : IDisposable
{
    public TempDirectory()
    {
        Path = Directory.CreateTempSubdirectory("localmxfp4-tok-").FullName;
    }

    public string Path { get; }

    public string File(params string[] parts) => System.IO.Path.Combine([Path, .. parts]);

    /// <summary>Links <paramref name="source"/> into the directory (copying where symlinks are unavailable).</summary>
    public string Link(string source, params string[] parts)
    {
        string target = File(parts);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(target)!);
        try
        {
            System.IO.File.CreateSymbolicLink(target, source);
        }
        catch (IOException)
        {
            System.IO.File.Copy(source, target);
        }
        catch (UnauthorizedAccessException)
        {
            System.IO.File.Copy(source, target);
        }

        return target;
    }

    public string Write(string content, params string[] parts)
    {
        string target = File(parts);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(target)!);
        System.IO.File.WriteAllText(target, content);
        return target;
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
            // A leftover temp folder is harmless; failing the test over it would not be.
        }
    }
}
