using System.Diagnostics;
using LocalMxfp4.TestSupport;

namespace LocalMxfp4.Engine.Tests;

/// <summary>Runs the real <c>lmx</c> executable as a user would.</summary>
public class CliTests
{
    private static readonly Stories260KReference Reference = Stories260KReference.Load();

    [Theory]
    [InlineData("model.safetensors")]
    [InlineData("model.bf16.safetensors")]
    public void GenerateGreedyPrintsTheReferenceTextAndIds(string file)
    {
        (int code, string stdout, string stderr) = Lmx("generate", "--model", Path.Combine(Stories260KReference.ModelDirectory, file),
            "--temperature", "0", "--max-tokens", (Reference.GreedyTokens.Length - 1).ToString(System.Globalization.CultureInfo.InvariantCulture), "--show-ids");
        Assert.True(code == 0, stderr);
        Assert.Equal(Reference.GreedyText, stdout.TrimEnd('\n'));
        Assert.Contains("ids: " + string.Join(' ', Reference.GreedyTokens[1..]), stderr);
        Assert.Contains("tok/s", stderr);
    }

    [Fact]
    public void GenerateWithNoArgumentsUsesTheBundledModel()
    {
        (int code, string stdout, string stderr) = Lmx("generate", "--max-tokens", "30", "--seed", "1");
        Assert.True(code == 0, stderr);
        Assert.True(stdout.Trim().Length > 20, stdout);
    }

    [Fact]
    public void InfoListsConfigTokenizerAndTensors()
    {
        (int code, string stdout, string stderr) = Lmx("info", "--model", Stories260KReference.ModelDirectory);
        Assert.True(code == 0, stderr);
        Assert.Contains("5 layers, hidden 64, MLP 172, heads 8/4", stdout);
        Assert.Contains("model.layers.4.mlp.down_proj.weight", stdout);
        Assert.Contains("F32", stdout);
        Assert.Contains("512 tokens", stdout);
    }

    [Fact]
    public void QuantizeThenGenerateAndInfoTheQuantizedModel()
    {
        string dir = Directory.CreateTempSubdirectory("lmx-cli-q").FullName;
        try
        {
            string output = Path.Combine(dir, "stories-hadamard");
            (int code, string stdout, string stderr) = Lmx("quantize", "--model", Stories260KReference.ModelDirectory, "--out", output, "--method", "hadamard", "--scale-rule", "even");
            Assert.True(code == 0, stderr);
            Assert.Contains("hadamard, scale rule even", stdout);

            (code, stdout, stderr) = Lmx("generate", "--model", output, "--temperature", "0", "--max-tokens", "20");
            Assert.True(code == 0, stderr);
            Assert.True(stdout.Trim().Length > 10, stdout);
            Assert.Contains("mxfp4", stderr);

            // An MXFP4 model runs on the GPU under Auto where one is usable; where not, the run says why.
            Assert.True(stderr.Contains("[cuda mxfp4", StringComparison.Ordinal) || stderr.Contains("CUDA not used: ", StringComparison.Ordinal), stderr);

            (code, stdout, stderr) = Lmx("info", "--model", output);
            Assert.True(code == 0, stderr);
            Assert.Contains("localmxfp4", stdout);
            Assert.Contains("model.layers.0.mlp.down_proj.weight_blocks", stdout);

            // Without calibration text, DuQuant++ cannot run: a one-line error, not a stack trace.
            (code, _, stderr) = Lmx("quantize", "--model", Stories260KReference.ModelDirectory, "--out", Path.Combine(dir, "x"), "--method", "duquant");
            Assert.Equal(2, code);
            Assert.Contains("--calib", stderr);
            Assert.False(Directory.Exists(Path.Combine(dir, "x")));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void BackendOptionChoosesTheEngineOrSaysWhyNot()
    {
        (int code, _, string stderr) = Lmx("generate", "--backend", "cpu", "--temperature", "0", "--max-tokens", "4");
        Assert.True(code == 0, stderr);
        Assert.Contains("[cpu float32", stderr);

        // The CUDA engine runs MXFP4 models only: asking for it with the float stories260K fails the same way on any machine.
        (code, _, stderr) = Lmx("generate", "--backend", "cuda", "--device", "0", "--max-tokens", "4");
        Assert.Equal(2, code);
        Assert.StartsWith("error: The CUDA backend cannot run: ", stderr);
        Assert.Contains("float checkpoint", stderr);
        Assert.DoesNotContain("   at ", stderr);

        (code, _, stderr) = Lmx("generate", "--backend", "gpu");
        Assert.NotEqual(0, code);
        Assert.Contains("'gpu'", stderr);
        Assert.Contains("Cuda", stderr);
    }

    [Fact]
    public void BadModelGivesOneLineErrorAndExitCode2()
    {
        string dir = Directory.CreateTempSubdirectory("lmx-cli-bad").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "config.json"), "{ \"hidden_size\": 64 }");
            (int code, _, string stderr) = Lmx("info", "--model", dir);
            Assert.Equal(2, code);
            Assert.StartsWith("error: ", stderr);
            Assert.Contains("config.json", stderr);
            Assert.DoesNotContain("   at ", stderr);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    private static (int Code, string Stdout, string Stderr) Lmx(params string[] args)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            StandardOutputEncoding = System.Text.Encoding.UTF8,
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "lmx.dll"));
        foreach (string a in args)
        {
            start.ArgumentList.Add(a);
        }

        using Process p = Process.Start(start)!;
        Task<string> stdout = p.StandardOutput.ReadToEndAsync();
        Task<string> stderr = p.StandardError.ReadToEndAsync();
        Assert.True(p.WaitForExit(120_000), "lmx did not finish in 2 minutes");
        return (p.ExitCode, stdout.Result, stderr.Result);
    }
}
