using System.Text.Json;
using LocalMxfp4.ChatClient.Constrained;
using LocalMxfp4.Tokenization;
using Microsoft.Extensions.AI;

namespace LocalMxfp4.ChatClient.Benchmarks;

/// <summary>The LLaMA-3 tokenizer from shared/ and the grammars the benchmarks run.</summary>
internal static class BenchSetup
{
    private static readonly Lazy<LlmTokenizer> Llama3 = new(() => LlmTokenizer.Load(TokenizerDirectory()));

    public static LlmTokenizer Tokenizer => Llama3.Value;

    /// <summary>Grammars of the three constrained paths: any JSON, a typed schema, a required tool call.</summary>
    public static IReadOnlyList<(string Name, JsonGrammar Grammar)> Grammars() =>
    [
        ("json (any value)", JsonGrammar.AnyValue()),
        ("schema (record)", JsonGrammar.FromSchema(AIJsonUtilities.CreateJsonSchema(typeof(Order)))),
        ("tool call (2 tools)", JsonGrammar.ToolCalls(
            [
                ("get_weather", AIFunctionFactory.Create((string city, int days) => "", "get_weather").JsonSchema),
                ("add_note", AIFunctionFactory.Create((string text, bool pinned) => "", "add_note").JsonSchema),
            ],
            maxCalls: 8)),
    ];

    public static GrammarTokenMask Mask(JsonGrammar grammar, int maxTokens) =>
        new(grammar, VocabularyIndex.For(Tokenizer), Tokenizer.EndOfSequenceIds, maxTokens, Tokenizer.VocabularySize);

    /// <summary>A mask advanced through <paramref name="prefix"/> (tokenised as the model would write it).</summary>
    public static GrammarTokenMask MaskAfter(JsonGrammar grammar, string prefix, int maxTokens)
    {
        GrammarTokenMask mask = Mask(grammar, maxTokens);
        foreach (int id in Tokenizer.Encode(prefix))
        {
            mask.Accept(id);
        }

        return mask;
    }

    private static string TokenizerDirectory()
    {
        string? shared = Environment.GetEnvironmentVariable("LOCALMXFP4_SHARED");
        if (string.IsNullOrEmpty(shared))
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "LocalMxfp4.sln")))
            {
                dir = dir.Parent;
            }

            shared = Path.Combine(dir?.FullName ?? throw new DirectoryNotFoundException("Run from inside the repository, or set LOCALMXFP4_SHARED."), "..", "shared");
        }

        string path = Path.Combine(shared, "tokenizers", "llama3");
        return Directory.Exists(path) ? path : throw new DirectoryNotFoundException($"The LLaMA-3 tokenizer was not found at {path}; set LOCALMXFP4_SHARED.");
    }

    internal sealed record Item(string Sku, int Quantity, double Price);

    internal sealed record Order(string Customer, int Id, bool Paid, string? Note, List<Item> Items, Status Status, JsonElement? Extra);

    internal enum Status
    {
        Open,
        Shipped,
        Cancelled,
    }
}
