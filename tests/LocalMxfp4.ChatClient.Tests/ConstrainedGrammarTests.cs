using System.Text;
using System.Text.Json;
using LocalMxfp4.ChatClient.Constrained;
using Microsoft.Extensions.AI;

namespace LocalMxfp4.ChatClient.Tests;

/// <summary>The byte-level grammar behind constrained decoding: what it accepts, what it rejects, what it refuses to compile.</summary>
public class ConstrainedGrammarTests
{
    private static JsonGrammar Schema(string json) => JsonGrammar.FromSchema(JsonElement.Parse(json));

    private static bool Accepts(JsonGrammar grammar, string text) => grammar.Accepts(Encoding.UTF8.GetBytes(text));

    [Theory]
    [InlineData("{}")]
    [InlineData("[]")]
    [InlineData("0")]
    [InlineData("-0.5")]
    [InlineData("123456789")]
    [InlineData("true")]
    [InlineData("null")]
    [InlineData("\"héllo 😀 \\\" \\\\ \\n \\u00e9 \\/\"")]
    [InlineData("{\"a\": [1, -2.5, true, false, null, \"x\"], \"b\": {\"c\": {}}}")]
    [InlineData(" \n{ \"k\" : [ ] }")]
    public void AnyValueAcceptsJson(string text)
    {
        Assert.True(Accepts(JsonGrammar.AnyValue(), text), text);
        using var _ = JsonDocument.Parse(text);
    }

    [Theory]
    [InlineData("{\"a\" 1}")]
    [InlineData("[1,]")]
    [InlineData("01")]
    [InlineData("1.")]
    [InlineData("-")]
    [InlineData("\"\\x\"")]
    [InlineData("\"abc")]
    [InlineData("{")]
    [InlineData("tru")]
    [InlineData("{\"a\":1}}")]
    [InlineData("\"\\ud800\"")]
    [InlineData("\"a\tb\"")]
    [InlineData("1e5")]
    [InlineData("{}   ")]
    public void AnyValueRejectsWhatIsNotOneCompleteValue(string text) => Assert.False(Accepts(JsonGrammar.AnyValue(), text), text);

    [Fact]
    public void StringsMustBeValidUtf8()
    {
        JsonGrammar any = JsonGrammar.AnyValue();
        Assert.False(any.Accepts([(byte)'"', 0xC0, 0x80, (byte)'"']));          // overlong
        Assert.False(any.Accepts([(byte)'"', 0xED, 0xA0, 0x80, (byte)'"']));    // UTF-8 encoded surrogate
        Assert.False(any.Accepts([(byte)'"', 0xE2, 0x82, (byte)'"']));          // truncated sequence
        Assert.True(any.Accepts([(byte)'"', 0xE2, 0x82, 0xAC, (byte)'"']));     // €
    }

    [Fact]
    public void ObjectsHaveTheirRequiredPropertiesInDeclarationOrderAndNoOthers()
    {
        JsonGrammar g = Schema("""
            {"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string"},"c":{"type":"boolean"}},"required":["a","c"]}
            """);
        Assert.True(Accepts(g, "{\"a\":1,\"c\":true}"));
        Assert.True(Accepts(g, "{\"a\": 1, \"b\": \"x\", \"c\": false}"));
        Assert.False(Accepts(g, "{\"c\":true,\"a\":1}"));
        Assert.False(Accepts(g, "{\"a\":1}"));
        Assert.False(Accepts(g, "{\"a\":1,\"c\":true,\"d\":0}"));
        Assert.False(Accepts(g, "{\"a\":1,\"a\":2,\"c\":true}"));
        Assert.False(Accepts(g, "{\"a\":\"1\",\"c\":true}"));
    }

    [Fact]
    public void ScalarsFollowTheirKeywords()
    {
        Assert.True(Accepts(Schema("""{"type":"integer","minimum":-5,"maximum":300}"""), "300"));
        Assert.False(Accepts(Schema("""{"type":"integer","minimum":-5,"maximum":300}"""), "301"));
        Assert.False(Accepts(Schema("""{"type":"integer","minimum":-5,"maximum":300}"""), "-6"));
        Assert.False(Accepts(Schema("""{"type":"integer"}"""), "1.5"));
        Assert.True(Accepts(Schema("""{"type":"number","exclusiveMinimum":0,"exclusiveMaximum":1}"""), "0.25"));
        Assert.False(Accepts(Schema("""{"type":"number","exclusiveMinimum":0,"exclusiveMaximum":1}"""), "1"));
        Assert.False(Accepts(Schema("""{"type":"number","exclusiveMinimum":0,"exclusiveMaximum":1}"""), "0"));
        Assert.True(Accepts(Schema("""{"type":"string","minLength":2,"maxLength":3}"""), "\"ab\""));
        Assert.True(Accepts(Schema("""{"type":"string","minLength":2,"maxLength":3}"""), "\"é😀\\n\""));
        Assert.False(Accepts(Schema("""{"type":"string","minLength":2,"maxLength":3}"""), "\"a\""));
        Assert.False(Accepts(Schema("""{"type":"string","minLength":2,"maxLength":3}"""), "\"abcd\""));
        Assert.True(Accepts(Schema("""{"type":"string","enum":["red","green"]}"""), "\"green\""));
        Assert.False(Accepts(Schema("""{"type":"string","enum":["red","green"]}"""), "\"blue\""));
        Assert.True(Accepts(Schema("""{"enum":[1, 10, "x", null]}"""), "10"));
        Assert.True(Accepts(Schema("""{"enum":[1, 10, "x", null]}"""), "1"));
        Assert.False(Accepts(Schema("""{"enum":[1, 10, "x", null]}"""), "100"));
        Assert.True(Accepts(Schema("""{"const":"only"}"""), "\"only\""));
        Assert.True(Accepts(Schema("""{"type":["string","null"]}"""), "null"));
        Assert.True(Accepts(Schema("""{"type":["string","null"]}"""), "\"s\""));
        Assert.False(Accepts(Schema("""{"type":["string","null"]}"""), "0"));
        Assert.True(Accepts(Schema("""{"type":"boolean"}"""), "false"));
        Assert.True(Accepts(Schema("""{"anyOf":[{"type":"integer"},{"type":"array","items":{"type":"string"}}]}"""), "[\"a\"]"));
    }

    [Fact]
    public void ArraysAndNestedObjects()
    {
        JsonGrammar g = Schema("""
            {"type":"object","properties":{"items":{"type":"array","minItems":1,"maxItems":2,
              "items":{"type":"object","properties":{"sku":{"type":"string"},"n":{"type":"integer"}},"required":["sku","n"]}}},
             "required":["items"],"additionalProperties":false}
            """);
        Assert.True(Accepts(g, "{\"items\":[{\"sku\":\"a\",\"n\":1}]}"));
        Assert.True(Accepts(g, "{\"items\":[{\"sku\":\"a\",\"n\":1},{\"sku\":\"b\",\"n\":2}]}"));
        Assert.False(Accepts(g, "{\"items\":[]}"));
        Assert.False(Accepts(g, "{\"items\":[{\"sku\":\"a\",\"n\":1},{\"sku\":\"b\",\"n\":2},{\"sku\":\"c\",\"n\":3}]}"));
        Assert.False(Accepts(g, "{\"items\":[{\"sku\":\"a\"}]}"));
        Assert.True(Accepts(Schema("""{"type":"object","additionalProperties":{"type":"integer"}}"""), "{\"x\": 1, \"y\": 2}"));
        Assert.False(Accepts(Schema("""{"type":"object","additionalProperties":{"type":"integer"}}"""), "{\"x\": \"1\"}"));
    }

    [Fact]
    public void FormatsProduceValuesDotNetParses()
    {
        Assert.True(Accepts(Schema("""{"type":"string","format":"date-time"}"""), "\"2024-07-26T13:05:59Z\""));
        Assert.False(Accepts(Schema("""{"type":"string","format":"date-time"}"""), "\"2024-13-26T13:05:59Z\""));
        Assert.True(Accepts(Schema("""{"type":"string","format":"date"}"""), "\"1999-02-28\""));
        Assert.False(Accepts(Schema("""{"type":"string","format":"date"}"""), "\"1999-02-30\""));
        Assert.True(Accepts(Schema("""{"type":"string","format":"uuid"}"""), "\"0f8fad5b-d9cb-469f-a165-70867728950e\""));
        Assert.False(Accepts(Schema("""{"type":"string","format":"uuid"}"""), "\"0f8fad5b\""));
    }

    private sealed class Node
    {
        public int Value { get; set; }

        public Node? Next { get; set; }
    }

    [Fact]
    public void RecursiveReferencesBecomeCycles()
    {
        JsonElement schema = AIJsonUtilities.CreateJsonSchema(typeof(Node));
        Assert.Contains("$ref", schema.GetRawText());
        JsonGrammar g = JsonGrammar.FromSchema(schema);
        Assert.True(Accepts(g, "{\"value\":1,\"next\":{\"value\":2,\"next\":{\"value\":3,\"next\":null}}}"));
        Assert.False(Accepts(g, "{\"value\":1,\"next\":{\"value\":\"2\"}}"));
        Assert.Throws<JsonSchemaNotSupportedException>(() => Schema("""{"type":"object","properties":{"me":{"$ref":"#"}},"required":["me"]}"""));
    }

    [Theory]
    [InlineData("""{"type":"string","pattern":"^a+$"}""", "pattern", "#")]
    [InlineData("""{"type":"object","properties":{"n":{"type":"integer","multipleOf":3}}}""", "multipleOf", "#/properties/n")]
    [InlineData("""{"allOf":[{"type":"string"}]}""", "allOf", "#")]
    [InlineData("""{"type":"array","uniqueItems":true}""", "uniqueItems", "#")]
    [InlineData("""{"type":"array","prefixItems":[{"type":"string"}]}""", "prefixItems", "#")]
    [InlineData("""{"type":"string","format":"email"}""", "format", "#")]
    [InlineData("""{"type":"string","x-vendor":1}""", "x-vendor", "#")]
    [InlineData("""{"anyOf":[{"type":"object"},{"type":"object","properties":{"a":{}}}]}""", "anyOf", "#")]
    [InlineData("""{"type":"object","properties":{"a":{}},"additionalProperties":{"type":"string"}}""", "additionalProperties", "#")]
    [InlineData("""{"$ref":"http://example.com/schema"}""", "$ref", "#")]
    public void UnsupportedKeywordsAreTypedErrorsNamingTheKeyword(string schema, string keyword, string path)
    {
        var e = Assert.Throws<JsonSchemaNotSupportedException>(() => Schema(schema));
        Assert.Equal(keyword, e.Keyword);
        Assert.Equal(path, e.SchemaPath);
        Assert.Contains($"'{keyword}'", e.Message);
        Assert.IsAssignableFrom<NotSupportedException>(e);
    }

    [Fact]
    public void AnnotationsAndSemanticKernelsConditionKeyAreAccepted()
    {
        JsonGrammar g = Schema("""
            {"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","condition":"Gets the weather","title":"t",
             "properties":{"city":{"type":"string","description":"city","default":"Oslo"}},"required":["city"]}
            """);
        Assert.True(Accepts(g, "{\"city\":\"Paris\"}"));
    }

    public static TheoryData<string> Grammars() =>
    [
        "any",
        """{"type":"object","properties":{"s":{"type":"string","minLength":3},"n":{"type":"number","minimum":100,"maximum":200.5},"o":{"type":["boolean","null"]},"l":{"type":"array","minItems":2,"items":{"type":"integer","minimum":-3,"maximum":-1}},"d":{"type":"string","format":"date-time"},"e":{"enum":["alpha","beta",7]}},"required":["s","n","l","d","e"]}""",
        "tools",
    ];

    private static JsonGrammar Named(string name) => name switch
    {
        "any" => JsonGrammar.AnyValue(),
        "tools" => JsonGrammar.ToolCalls(
            [
                ("get_weather", AIFunctionFactory.Create((string city, int days) => "", "get_weather").JsonSchema),
                ("add", AIFunctionFactory.Create((double a, double b, bool round = false) => 0.0, "add").JsonSchema),
            ],
            maxCalls: 3),
        _ => Schema(name),
    };

    /// <summary>
    /// The budget relies on Distance being the exact shortest completion: 0 exactly when complete, never dropping by
    /// more than one per byte, and always some byte that lowers it by one. Checked along random walks.
    /// </summary>
    [Theory]
    [MemberData(nameof(Grammars))]
    public void DistanceIsTheExactShortestCompletion(string name)
    {
        JsonGrammar grammar = Named(name);
        for (int seed = 0; seed < 40; seed++)
        {
            var random = new Random(seed);
            var r = new JsonRecognizer(grammar);
            var text = new List<byte>();
            for (int step = 0; step < 60; step++)
            {
                int distance = r.Distance;
                Assert.Equal(distance == 0, r.IsComplete);
                var accepted = new List<(byte Byte, int Distance)>();
                for (int b = 0; b < 256; b++)
                {
                    JsonRecognizer.Checkpoint cp = r.Save();
                    if (r.Advance((byte)b))
                    {
                        accepted.Add(((byte)b, r.Distance));
                    }

                    r.Restore(cp);
                }

                Assert.All(accepted, a => Assert.True(a.Distance >= distance - 1, $"{name}: byte {a.Byte} drops distance {distance} to {a.Distance} after '{Encoding.UTF8.GetString([.. text])}'"));
                if (distance > 0)
                {
                    Assert.Contains(accepted, a => a.Distance == distance - 1);
                }

                if (accepted.Count == 0)
                {
                    break;
                }

                // Mostly random, so every kind of state is visited; sometimes the shortest way, so values complete.
                (byte next, _) = random.Next(3) == 0 ? accepted.MinBy(a => a.Distance) : accepted[random.Next(accepted.Count)];
                Assert.True(r.Advance(next));
                r.Commit();
                text.Add(next);
            }

            // Finishing along the shortest path takes exactly Distance bytes and gives a complete reply.
            int left = r.Distance;
            for (int i = 0; i < left; i++)
            {
                byte best = 0;
                int bestDistance = int.MaxValue;
                for (int b = 0; b < 256; b++)
                {
                    JsonRecognizer.Checkpoint cp = r.Save();
                    if (r.Advance((byte)b) && r.Distance < bestDistance)
                    {
                        (best, bestDistance) = ((byte)b, r.Distance);
                    }

                    r.Restore(cp);
                }

                Assert.True(r.Advance(best));
                r.Commit();
                text.Add(best);
            }

            Assert.True(r.IsComplete, Encoding.UTF8.GetString([.. text]));
            string json = Encoding.UTF8.GetString([.. text]);
            if (name == "tools")
            {
                Assert.True(Tools.ToolCallText.TryParse(json, ["get_weather", "add"], out List<FunctionCallContent> calls), json);
                Assert.NotEmpty(calls);
            }
            else
            {
                using var _ = JsonDocument.Parse(json);
            }

            if (name.StartsWith('{'))
            {
                Assert.Null(SchemaValidator.Check(JsonElement.Parse(name), JsonElement.Parse(json)));
            }
        }
    }
}
