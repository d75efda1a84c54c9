using System.Globalization;

namespace LocalMxfp4.Samples.ChatConsole;

/// <summary>The command line: <c>[--model DIR] [--max-tokens N] [--temperature T] [--context N] [--system TEXT]</c>.</summary>
internal sealed record SampleArguments
{
    public string ModelPath { get; init; } = Path.Combine(AppContext.BaseDirectory, "models", "stories260K");

    public int MaxTokens { get; init; } = 200;

    public float? Temperature { get; init; }

    public int? ContextLength { get; init; }

    public string? SystemPrompt { get; init; }

    public bool Help { get; init; }

    public const string Usage = """
        ChatConsole — a streaming chat with a local model through DuQuantChatClient.
        usage: ChatConsole [--model DIR] [--max-tokens N] [--temperature T] [--context N] [--system TEXT]
          --model DIR        a Hugging Face LLaMA directory (float or quantized); default: the bundled stories260K
          --max-tokens N     longest reply (default 200)
          --temperature T    0 = greedy (default: the model's generation_config.json, else 0.8)
          --context N        KV-cache tokens (default: the model's maximum, at most 4096)
          --system TEXT      system prompt
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
                _ => throw new ArgumentException($"unknown option '{name}' (see --help)."),
            };
        }

        return result;
    }

    private static int PositiveInt(string name, string value) =>
        int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out int n) && n > 0
            ? n
            : throw new ArgumentException($"{name}: '{value}' is not a whole number ≥ 1.");
}
