using System.CommandLine;
using System.Diagnostics;
using LocalMxfp4.Models.Checkpoint;
using LocalMxfp4.Models.Gguf;
using LocalMxfp4.Models.Quantized;

namespace LocalMxfp4.Cli;

/// <summary><c>lmx export-gguf</c>: the same MXFP4 weights as a GGUF file for llama.cpp-based engines.</summary>
internal static class ExportGgufCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "An RTN MXFP4 model written by lmx quantize (or lmx bench synth).", Required = true };
        var output = new Option<string>("--out") { Description = "The .gguf file to write.", Required = true };
        var command = new Command("export-gguf", "Export an MXFP4 model to GGUF (ggml block_mxfp4: the same E2M1 + E8M0 bytes) for llama.cpp, LLamaSharp, Ollama.")
        {
            model, output,
        };
        command.SetAction(parse =>
        {
            var clock = Stopwatch.StartNew();
            ModelDirectory dir = ModelDirectory.Resolve(parse.GetValue(model)!);
            QuantizedModel q = QuantizedModelReader.Read(dir.Weights);
            string path = parse.GetValue(output)!;
            GgufExporter.Export(q, dir.Directory, path);
            Console.WriteLine($"wrote {Path.GetFullPath(path)} ({new FileInfo(path).Length / 1048576.0:F0} MiB) in {clock.Elapsed.TotalSeconds:F1} s");
            return 0;
        });
        return command;
    }
}
