using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;

namespace LocalMxfp4.ChatClient.Tests;

/// <summary>Runs the built samples as a user would, with scripted standard input.</summary>
public partial class SampleTests(TinyLlama3Model llama)
{
    [GeneratedRegex(@"^\[(\d+) tokens, prompt (\d+), TTFT [\d.]+ ms, [\d.]+ tok/s, finish (length|stop)\]$", RegexOptions.Multiline)]
    private static partial Regex StatsLine();

    [Fact]
    public void ChatConsoleStreamsRepliesAndPrintsStatsOnTheBundledModel()
    {
        (int code, string stdout, string stderr) = Run("ChatConsole.dll", "Once upon a time\n/system Tell a story.\nThe cat\n/reset\n/exit\n", "--max-tokens", "40");
        Assert.True(code == 0, stderr);
        Assert.Contains("Loaded stories260K", stdout);
        Assert.Contains("Not a chat model", stdout);
        MatchCollection stats = StatsLine().Matches(stdout);
        Assert.Equal(2, stats.Count);
        Assert.All(stats, m => Assert.Equal("40", m.Groups[1].Value));
        Assert.Equal("5", stats[0].Groups[2].Value);                 // BOS + "Once upon a time"
        Assert.Contains("(system prompt set, history cleared)", stdout);
        Assert.Contains("(history cleared)", stdout);
        string firstReply = stdout[(stdout.IndexOf("> ", StringComparison.Ordinal) + 2)..stats[0].Index];
        Assert.True(firstReply.Trim().Length > 40, firstReply);
    }

    [Fact]
    public void ChatConsoleRunsALlamaThreeDirectoryAndRejectsBadArguments()
    {
        (int code, string stdout, string stderr) = Run("ChatConsole.dll", "Hello!\n", "--model", llama.Directory, "--max-tokens", "6", "--temperature", "0");
        Assert.True(code == 0, stderr);
        Assert.Contains("template llama3", stdout);
        Assert.DoesNotContain("Not a chat model", stdout);
        Assert.Single(StatsLine().Matches(stdout));

        (int bad, _, string error) = Run("ChatConsole.dll", string.Empty, "--model", "/no/such/model");
        Assert.Equal(2, bad);
        Assert.StartsWith("error: ", error);
        Assert.Contains("/no/such/model", error);
        Assert.DoesNotContain("   at ", error);

        (bad, _, error) = Run("ChatConsole.dll", string.Empty, "--backend", "gpu");
        Assert.Equal(2, bad);
        Assert.Contains("--backend: 'gpu' is not auto, cpu or cuda", error);

        // The sample ships the CUDA backend; the bundled float model is not one it runs, on any machine.
        (bad, _, error) = Run("ChatConsole.dll", string.Empty, "--backend", "cuda", "--device", "0");
        Assert.Equal(2, bad);
        Assert.StartsWith("error: The CUDA backend cannot run: ", error);
        Assert.Contains("float checkpoint", error);
    }

    [Fact]
    public void SemanticKernelAgentMakesTheShippedModelCallItsPlugin()
    {
        (int code, string stdout, string stderr) = Run("SemanticKernelAgent.dll", "Once upon a time\n/call notebook.add_note buy milk\n/call notebook.list_notes\n/exit\n");
        Assert.True(code == 0, stderr);
        Assert.Contains("notebook.add_note", stdout);
        Assert.Contains("stories260K cannot read tool descriptions, so every turn requires a function call", stdout);

        // The model's own (constrained) call comes first, then the two the user ran.
        MatchCollection calls = ToolLine().Matches(stdout);
        Assert.Equal(3, calls.Count);
        Assert.Matches(@"Saved note #\d\.", stdout);
        Assert.Matches(@"\d\. buy milk", stdout);
    }

    [Fact]
    public void SemanticKernelAgentOffersToolsToAChatModel()
    {
        (int code, string stdout, string stderr) = Run("SemanticKernelAgent.dll", string.Empty, "--model", llama.Directory, "--prompt", "Save a note: buy milk", "--max-tokens", "4");
        Assert.True(code == 0, stderr);
        Assert.Contains("Tool calling: on. The model sees the functions above and may call them", stdout);
    }

    [GeneratedRegex(@"\[tool\] notebook\.(add_note|list_notes|utc_now)\(.*\) -> .+$", RegexOptions.Multiline)]
    private static partial Regex ToolLine();

    [Fact]
    public void HostedServiceBindsAppSettingsWarmsUpAndReplies()
    {
        (int code, string stdout, string stderr) = Run("HostedService.dll", string.Empty);
        Assert.True(code == 0, stdout + stderr);
        Assert.Contains("Warm-up of stories260K done", stdout);
        Assert.Contains("usage: 12 input, 80 output tokens; finish length", stdout);

        (int bad, string badOut, string badErr) = Run("HostedService.dll", string.Empty, "--DuQuant:ContextLength", "100000");
        Assert.Equal(2, bad);
        Assert.Contains("ContextLength 100000 exceeds the model's max_position_embeddings (512)", badOut + badErr);
    }

    private static (int Code, string Stdout, string Stderr) Run(string dll, string stdin, params string[] args)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            StandardOutputEncoding = Encoding.UTF8,
            StandardInputEncoding = new UTF8Encoding(false),
            WorkingDirectory = Path.GetTempPath(),
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, dll));
        foreach (string a in args)
        {
            start.ArgumentList.Add(a);
        }

        using Process p = Process.Start(start)!;
        Task<string> stdout = p.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);
        Task<string> stderr = p.StandardError.ReadToEndAsync(TestContext.Current.CancellationToken);
        p.StandardInput.Write(stdin);
        p.StandardInput.Close();
        if (!p.WaitForExit(60_000))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail($"{dll} did not finish in 60 s");
        }

        return (p.ExitCode, stdout.Result, stderr.Result);
    }
}
