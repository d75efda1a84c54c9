using System.Globalization;
using LocalMxfp4.Engine.Loading;

namespace LocalMxfp4.Samples.ChatConsole;

/// <summary>The command line: <c>[--model DIR] [--max-tokens N] [--temperature T] [--context N] [--system TEXT] [--backend B] [--device N]</c>.</summary>
internal sealed record SampleArguments
{
    public string ModelPath { get; init; } = Path.Combine(AppContext.BaseDirectory, "models", "stories260K");

    public int MaxTokens { get; init; } = 200;

    public float? Temperature { get; init; }

    public int? ContextLength { get; init; }

    public string? SystemPrompt { get; init; }

    public EngineBackend Backend { get; init; } = EngineBackend.Auto;

    public int? Device { get; init; }

    public bool Help { get; init; }

    public const string Usage = """
        ChatConsole — a streaming chat with a local model through DuQuantChatClient.
        usage: ChatConsole [--model DIR] [--max-tokens N] [--temperature T] [--context N] [--system TEXT] [--backend B] [--device N]
          --model DIR        a Hugging Face LLaMA directory (float or quantized); default: the bundled stories260K
          --max-tokens N     longest reply (default 200)
          --temperature T    0 = greedy (default: the model's generation_config.json, else 0.8)
          --context N        KV-cache tokens (default: the model's maximum, at most 4096)
          --system TEXT      system prompt
          --backend B        auto (default: the GPU for an MXFP4 model when CUDA can run it, else the CPU) | cpu | cuda
          --device N         CUDA device ordinal (default 0)
        In the chat: /reset clears the history, /system TEXT sets the system prompt, /exit quits; Ctrl+C stops a reply.
        """;

    public static SampleArguments Parse(string[] args)
    {
        var result = new SampleArguments();
        for (int i = 0; i < args.Length; i++)
        {
            string name = args[i];
            if (name is "--help" or "-h")
            {
                return result with { Help = true };
            }

            if (i + 1 >= args.Length)
            {
                throw new ArgumentException($"{name} needs a value (see --help).");
            }

            string value = args[++i];
            result = name switch
            {
                "--model" => result with { ModelPath = value },
                "--max-tokens" => result with { MaxTokens = PositiveInt(name, value) },
                "--temperature" => result with { Temperature = float.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out float t) && t >= 0 ? t : throw new ArgumentException($"--temperature: '{value}' is not a number ≥ 0.") },
                "--context" => result with { ContextLength = PositiveInt(name, value) },
                "--system" => result with { SystemPrompt = value },
                "--backend" => result with { Backend = BackendName(value) },
                "--device" => result with { Device = int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out int d) && d >= 0 ? d : throw new ArgumentException($"--device: '{value}' is not a device ordinal ≥ 0.") },
                _ => throw new ArgumentException($"unknown option '{name}' (see --help)."),
            };
        }

        return result;
    }

    private static EngineBackend BackendName(string value)
    {
        // By name only: Enum.TryParse would also take "2".
        foreach (EngineBackend backend in Enum.GetValues<EngineBackend>())
        {
            if (string.Equals(backend.ToString(), value, StringComparison.OrdinalIgnoreCase))
            {
                return backend;
            }
        }

        throw new ArgumentException($"--backend: '{value}' is not auto, cpu or cuda.");
    }

    private static int PositiveInt(string name, string value) =>
        int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out int n) && n > 0
            ? n
            : throw new ArgumentException($"{name}: '{value}' is not a whole number ≥ 1.");
}
