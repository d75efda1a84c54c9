using System.Text;
using System.Text.Json;
using LocalMxfp4.ChatClient.Constrained;
using LocalMxfp4.Tokenization;
using Microsoft.Extensions.AI;

namespace LocalMxfp4.ChatClient.Tests;

/// <summary>The token mask over the real 128,256-token LLaMA-3 vocabulary.</summary>
public class TokenMaskTests(TinyLlama3Model llama)
{
    private const string PersonSchema = """
        {"type":"object","properties":{"name":{"type":"string","maxLength":40},"age":{"type":"integer","minimum":0,"maximum":150},
         "tags":{"type":"array","items":{"type":"string","enum":["admin","user"]}},"note":{"type":["string","null"]}},"required":["name","age"]}
        """;

    private LlmTokenizer Tokenizer => llama.Tokenizer;

    private GrammarTokenMask Mask(JsonGrammar grammar, string prefix, int maxTokens = 10_000)
    {
        var mask = new GrammarTokenMask(grammar, VocabularyIndex.For(Tokenizer), Tokenizer.EndOfSequenceIds, maxTokens, Tokenizer.VocabularySize);
        foreach (int id in Tokenizer.Encode(prefix))
        {
            mask.Accept(id);
        }

        return mask;
    }

    [Theory]
    [InlineData("any", "")]
    [InlineData("any", "{\"a\": [1, \"x")]
    [InlineData("any", "[12")]
    [InlineData("any", "\"caf\\u00")]
    [InlineData("person", "")]
    [InlineData("person", "{\"name\": \"Ada")]
    [InlineData("person", "{\"name\": \"Ada\", ")]
    [InlineData("person", "{\"name\": \"Ada\", \"age\": 1")]
    [InlineData("person", "{\"name\": \"Ada\", \"age\": 12, \"tags\": [\"ad")]
    public void TheMaskAllowsExactlyTheTokensTheGrammarAccepts(string grammarName, string prefix)
    {
        JsonGrammar grammar = grammarName == "any" ? JsonGrammar.AnyValue() : JsonGrammar.FromSchema(JsonElement.Parse(PersonSchema));
        GrammarTokenMask mask = Mask(grammar, prefix);
        float[] logits = new float[Tokenizer.VocabularySize];
        mask.Apply(logits);

        // Brute force: feed every token's bytes to a recognizer in the same state.
        var recognizer = new JsonRecognizer(grammar);
        foreach (byte b in Encoding.UTF8.GetBytes(prefix))
        {
            Assert.True(recognizer.Advance(b));
        }

        recognizer.Commit();
        int allowed = 0;
        for (int id = 0; id < Tokenizer.VocabularySize; id++)
        {
            bool expected;
            if (Tokenizer.IsSpecial(id))
            {
                expected = Tokenizer.IsEndOfSequence(id) && recognizer.IsComplete;
            }
            else
            {
                JsonRecognizer.Checkpoint cp = recognizer.Save();
                expected = Tokenizer.GetTokenBytes(id).Length > 0;
                foreach (byte b in Tokenizer.GetTokenBytes(id))
                {
                    expected &= recognizer.Advance(b);
                    if (!expected)
                    {
                        break;
                    }
                }

                recognizer.Restore(cp);
            }

            Assert.True(expected == mask.IsAllowed(id), $"token {id} '{Encoding.UTF8.GetString(Tokenizer.GetTokenBytes(id))}': grammar says {expected}");
            Assert.Equal(expected, !float.IsNegativeInfinity(logits[id]));
            allowed += expected ? 1 : 0;
        }

        Assert.True(allowed > 0);
    }

    [Fact]
    public void EndOfSequenceIsAllowedExactlyWhenTheValueIsComplete()
    {
        JsonGrammar grammar = JsonGrammar.FromSchema(JsonElement.Parse(PersonSchema));
        int eot = llama.Special("<|eot_id|>");
        GrammarTokenMask open = Mask(grammar, "{\"name\": \"Ada\", \"age\": 36");
        open.Apply(new float[Tokenizer.VocabularySize]);
        Assert.False(open.IsAllowed(eot));
        GrammarTokenMask closed = Mask(grammar, "{\"name\": \"Ada\", \"age\": 36}");
        closed.Apply(new float[Tokenizer.VocabularySize]);
        Assert.True(closed.IsAllowed(eot));
        Assert.Equal(Tokenizer.EndOfSequenceIds.Count, Enumerable.Range(0, Tokenizer.VocabularySize).Count(closed.IsAllowed));

        // A number at the top level may go on or end.
        GrammarTokenMask number = Mask(JsonGrammar.AnyValue(), "12");
        number.Apply(new float[Tokenizer.VocabularySize]);
        Assert.True(number.IsAllowed(eot));
        Assert.True(number.IsAllowed(Tokenizer.Encode("3")[0]));
    }

    /// <summary>
    /// Whatever the model prefers, a reply is complete and valid within MaxOutputTokens: picking uniformly among the
    /// allowed tokens (which never closes a string on its own) still ends in a complete value and an end-of-sequence.
    /// </summary>
    [Theory]
    [InlineData(24)]
    [InlineData(40)]
    public void TheBudgetMakesEveryReplyCompleteInTime(int maxTokens)
    {
        JsonGrammar grammar = JsonGrammar.FromSchema(JsonElement.Parse(PersonSchema));
        Assert.True(grammar.MinLength + 1 <= maxTokens);
        float[] logits = new float[Tokenizer.VocabularySize];
        for (int seed = 0; seed < 12; seed++)
        {
            var random = new Random(seed);
            GrammarTokenMask mask = Mask(grammar, "", maxTokens);
            var output = new List<int>();
            while (true)
            {
                Array.Clear(logits);
                mask.Apply(logits);
                int[] allowed = [.. Enumerable.Range(0, logits.Length).Where(i => !float.IsNegativeInfinity(logits[i]))];
                int next = allowed[random.Next(allowed.Length)];
                output.Add(next);
                if (Tokenizer.IsEndOfSequence(next))
                {
                    break;
                }

                mask.Accept(next);
                Assert.True(output.Count < maxTokens, "the budget ran out before the value was complete");
            }

            Assert.True(output.Count <= maxTokens);
            string json = Tokenizer.Decode(output);
            Assert.Null(SchemaValidator.Check(JsonElement.Parse(PersonSchema), JsonElement.Parse(json)));
        }
    }

    [Fact]
    public void TheVocabularyIndexIsBuiltOncePerTokenizer()
    {
        VocabularyIndex index = VocabularyIndex.For(Tokenizer);
        Assert.Same(index, VocabularyIndex.For(Tokenizer));
        Assert.Equal(128_256, index.Size);
        Assert.True(index.StringBodyCount > 100_000, $"{index.StringBodyCount} plain-text tokens");
        Assert.Equal(index.Size - 256, index.All.TokenCount);
    }

    [Fact]
    public void ToolCallMaskOffersOnlyTheDeclaredNames()
    {
        JsonGrammar grammar = JsonGrammar.ToolCalls(
            [("get_weather", AIFunctionFactory.Create((string city) => "", "get_weather").JsonSchema), ("get_time", AIFunctionFactory.Create(() => "", "get_time").JsonSchema)],
            maxCalls: 1);
        GrammarTokenMask mask = Mask(grammar, "{\"name\": \"get_");
        mask.Apply(new float[Tokenizer.VocabularySize]);
        string[] allowed = [.. Enumerable.Range(0, Tokenizer.VocabularySize).Where(mask.IsAllowed).Select(id => Encoding.UTF8.GetString(Tokenizer.GetTokenBytes(id)))];
        Assert.Contains("weather", allowed);
        Assert.Contains("time", allowed);
        Assert.All(allowed, a => Assert.True("weather\", ".StartsWith(a, StringComparison.Ordinal) || "time\", ".StartsWith(a, StringComparison.Ordinal) || a.StartsWith("weather\"", StringComparison.Ordinal) || a.StartsWith("time\"", StringComparison.Ordinal), a));
    }
}
