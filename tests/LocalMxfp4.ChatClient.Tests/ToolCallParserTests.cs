using System.Text.Json;
using LocalMxfp4.ChatClient.Tools;
using Microsoft.Extensions.AI;

namespace LocalMxfp4.ChatClient.Tests;

/// <summary>The tool-call parser on hand-written model outputs, whole and streamed in pieces.</summary>
public class ToolCallParserTests
{
    private const int PythonTag = 128010;
    private static readonly string[] Names = ["get_weather", "add_note"];

    private static (List<AIContent> Streamed, List<AIContent> All, ChatFinishReason? Finish) Parse(string output, bool allowMultiple = true, bool pythonTag = false, int piece = 3)
    {
        var parser = new ToolCallResponseParser(Names, allowMultiple, PythonTag);
        if (pythonTag)
        {
            parser.OnSpecialToken(PythonTag);
        }

        var streamed = new List<AIContent>();
        for (int i = 0; i < output.Length; i += piece)
        {
            streamed.AddRange(parser.Append(output.Substring(i, Math.Min(piece, output.Length - i))));
        }

        var all = new List<AIContent>(streamed);
        all.AddRange(parser.Complete());
        return (streamed, all, parser.FinishReasonOverride);
    }

    private static string Text(IEnumerable<AIContent> contents) => string.Concat(contents.OfType<TextContent>().Select(t => t.Text));

    [Theory]
    [InlineData("{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\", \"days\": 3}}")]
    [InlineData("  {\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\",\"days\":3}}\n")]
    [InlineData("{\"name\": \"get_weather\", \"arguments\": \"{\\\"city\\\": \\\"Paris\\\", \\\"days\\\": 3}\"}")]
    public void AValidCallBecomesOneFunctionCallContent(string output)
    {
        (List<AIContent> streamed, List<AIContent> all, ChatFinishReason? finish) = Parse(output);
        Assert.Empty(streamed);                                   // held back until it is whole
        FunctionCallContent call = Assert.IsType<FunctionCallContent>(Assert.Single(all));
        Assert.Equal("get_weather", call.Name);
        Assert.StartsWith("call_", call.CallId);
        Assert.Equal("Paris", ((JsonElement)call.Arguments!["city"]!).GetString());
        Assert.Equal(3, ((JsonElement)call.Arguments["days"]!).GetInt32());
        Assert.Equal(ChatFinishReason.ToolCalls, finish);
    }

    [Fact]
    public void PythonTagAnnouncesACall()
    {
        (_, List<AIContent> all, ChatFinishReason? finish) = Parse("{\"name\": \"add_note\", \"parameters\": {\"text\": \"milk\"}}", pythonTag: true);
        Assert.Equal("add_note", Assert.IsType<FunctionCallContent>(Assert.Single(all)).Name);
        Assert.Equal(ChatFinishReason.ToolCalls, finish);
    }

    [Fact]
    public void SeveralCallsSeparatedBySemicolonsGetDistinctIds()
    {
        const string output = "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo; Norway\"}}; {\"name\": \"add_note\", \"parameters\": {\"text\": \"}{\"}} ;";
        (_, List<AIContent> all, _) = Parse(output);
        FunctionCallContent[] calls = [.. all.Cast<FunctionCallContent>()];
        Assert.Equal(["get_weather", "add_note"], calls.Select(c => c.Name));
        Assert.Equal("Oslo; Norway", ((JsonElement)calls[0].Arguments!["city"]!).GetString());
        Assert.NotEqual(calls[0].CallId, calls[1].CallId);

        (_, List<AIContent> one, _) = Parse(output, allowMultiple: false);
        Assert.Equal("get_weather", Assert.IsType<FunctionCallContent>(Assert.Single(one)).Name);
    }

    [Theory]
    [InlineData("{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"")]                 // cut off
    [InlineData("{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}} and more")]       // trailing prose
    [InlineData("{\"name\": \"send_email\", \"parameters\": {}}")]                                     // not an offered tool
    [InlineData("{\"name\": \"get_weather\"}")]                                                         // no parameters
    [InlineData("{\"name\": \"\", \"parameters\": {}}")]                                                // empty name
    [InlineData("{\"name\": \"get_weather\", \"parameters\": [1, 2]}")]                               // parameters not an object
    [InlineData("{\"city\": \"Paris\"}")]                                                              // JSON, not a call
    [InlineData("{\"name\": \"get_weather\", \"parameters\": {}}; garbage")]
    public void MalformedCallsFallBackToTheirText(string output)
    {
        (List<AIContent> streamed, List<AIContent> all, ChatFinishReason? finish) = Parse(output);
        Assert.Empty(streamed);
        Assert.Equal(output, Text(all));
        Assert.DoesNotContain(all, c => c is FunctionCallContent);
        Assert.Null(finish);
    }

    [Fact]
    public void ProseContainingJsonStreamsAsText()
    {
        const string output = "Sure! I would call {\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}} for that.";
        (List<AIContent> streamed, List<AIContent> all, ChatFinishReason? finish) = Parse(output);
        Assert.Equal(output, Text(streamed));                    // not held back: it started as prose
        Assert.Equal(output, Text(all));
        Assert.Null(finish);
    }

    [Fact]
    public void LeadingWhitespaceWaitsForTheFirstCharacter()
    {
        var parser = new ToolCallResponseParser(Names, true, null);
        Assert.Empty(parser.Append("\n  "));
        Assert.Equal("\n  Hello", Text(parser.Append("Hello")));
        Assert.Equal(" there", Text(parser.Append(" there")));
        Assert.Empty(parser.Complete());
    }

    [Fact]
    public void CallsAreWrittenBackAsMetasTemplateWritesThem()
    {
        var call = new FunctionCallContent("c1", "get_weather", new Dictionary<string, object?> { ["city"] = "Paris", ["days"] = 3, ["raw"] = JsonElement.Parse("[1,{\"a\":null}]") });
        Assert.Equal("{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\", \"days\": 3, \"raw\": [1, {\"a\": null}]}}", ToolCallText.Format(call));
        Assert.Equal("{\"output\": \"Sunny, 21 °C\"}", ToolCallText.FormatResult(new FunctionResultContent("c1", "Sunny, 21 °C")));
        Assert.True(ToolCallText.TryParse(ToolCallText.Format(call), Names, out List<FunctionCallContent> back));
        Assert.Equal(3, ((JsonElement)back[0].Arguments!["days"]!).GetInt32());
    }
}
