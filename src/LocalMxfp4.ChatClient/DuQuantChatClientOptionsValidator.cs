using LocalMxfp4.Models.Configuration;
using Microsoft.Extensions.Options;

namespace LocalMxfp4.ChatClient;

/// <summary>
/// Checks <see cref="DuQuantChatClientOptions"/> when the host starts (registered with <c>ValidateOnStart</c> by
/// <c>AddDuQuantChatClient</c>): the model path exists and holds a readable config.json, the context length fits the
/// model, the limits and sampling defaults are in range, the backend is known. Each failure says what to change.
/// </summary>
public sealed class DuQuantChatClientOptionsValidator : IValidateOptions<DuQuantChatClientOptions>
{
    /// <inheritdoc />
    public ValidateOptionsResult Validate(string? name, DuQuantChatClientOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        string[] problems = Check(options);
        if (problems.Length == 0)
        {
            return ValidateOptionsResult.Success;
        }

        string prefix = string.IsNullOrEmpty(name) ? "DuQuant" : $"DuQuant ({name})";
        return ValidateOptionsResult.Fail(problems.Select(p => $"{prefix}: {p}"));
    }

    /// <summary>Every problem with <paramref name="options"/>, each a sentence naming the setting; empty when valid.</summary>
    public static string[] Check(DuQuantChatClientOptions options, bool requireModelPath = true)
    {
        ArgumentNullException.ThrowIfNull(options);
        var problems = new List<string>();
        int? maxPositions = null;
        if (string.IsNullOrWhiteSpace(options.ModelPath))
        {
            if (requireModelPath)
            {
                problems.Add("ModelPath is not set; set it to a Hugging Face model directory (config.json, *.safetensors, tokenizer files).");
            }
        }
        else
        {
            string full = Path.GetFullPath(options.ModelPath);
            string? directory = Directory.Exists(full) ? full
                : File.Exists(full) && full.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase) ? Path.GetDirectoryName(full)
                : null;
            if (directory is null)
            {
                problems.Add(File.Exists(full)
                    ? $"ModelPath '{options.ModelPath}' is a file but not a .safetensors file; point it at the model directory."
                    : $"ModelPath '{options.ModelPath}' does not exist (resolved to '{full}', current directory '{Environment.CurrentDirectory}').");
            }
            else if (!File.Exists(Path.Combine(directory, "config.json")))
            {
                problems.Add($"ModelPath '{options.ModelPath}' has no config.json; it must be a Hugging Face model directory.");
            }
            else
            {
                try
                {
                    maxPositions = LlamaConfig.Load(directory).MaxPositions;
                }
                catch (ModelConfigException e)
                {
                    problems.Add($"ModelPath '{options.ModelPath}': {e.Message}");
                }
            }
        }

        if (!Enum.IsDefined(options.Backend))
        {
            problems.Add($"Backend '{options.Backend}' is unknown; use Auto, Cpu or Cuda.");
        }

        if (!Enum.IsDefined(options.ContextOverflowPolicy))
        {
            problems.Add($"ContextOverflowPolicy '{options.ContextOverflowPolicy}' is unknown; use Throw or DropOldestMessages.");
        }

        if (!Enum.IsDefined(options.ChatTemplate))
        {
            problems.Add($"ChatTemplate '{options.ChatTemplate}' is unknown; use Auto, Llama3 or PlainText.");
        }

        if (options.ContextLength is int context)
        {
            if (context < 2)
            {
                problems.Add($"ContextLength {context} is too small; it must hold the prompt and the reply (at least 2 tokens; leave it unset for the model's maximum up to {DuQuantChatClientOptions.DefaultContextLengthCap}).");
            }
            else if (maxPositions is int max && context > max)
            {
                problems.Add($"ContextLength {context} exceeds the model's max_position_embeddings ({max}); use at most {max}.");
            }
        }

        if (options.DefaultMaxOutputTokens < 1)
        {
            problems.Add($"DefaultMaxOutputTokens {options.DefaultMaxOutputTokens} must be at least 1 (replies are clamped to the context left after the prompt).");
        }

        if (options.Threads < 0)
        {
            problems.Add($"Threads {options.Threads} must be ≥ 0 (0 = one per core).");
        }

        if (options.Device < 0)
        {
            problems.Add($"Device {options.Device} must be a CUDA device ordinal ≥ 0 (or unset for device 0).");
        }

        if (options.MaxConcurrentRequests is < 1 or > 64)
        {
            problems.Add($"MaxConcurrentRequests {options.MaxConcurrentRequests} must be between 1 and 64 (the batch size of the engine loop).");
        }

        if (options.MaxBatchTokens < Math.Max(1, options.MaxConcurrentRequests))
        {
            problems.Add($"MaxBatchTokens {options.MaxBatchTokens} must be at least MaxConcurrentRequests ({options.MaxConcurrentRequests}): every running request decodes one token per step.");
        }

        if (options.KvCacheTokens is long kv)
        {
            int? fullContext = options.ContextLength ?? (maxPositions is int m ? Math.Min(m, DuQuantChatClientOptions.DefaultContextLengthCap) : null);
            if (kv < 2 || (fullContext is int c && kv < c))
            {
                problems.Add($"KvCacheTokens {kv} must hold at least one full context ({fullContext?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "ContextLength"} tokens), so every request that fits the context can complete.");
            }
        }

        if (!Enum.IsDefined(options.KvCachePrecision))
        {
            problems.Add($"KvCachePrecision '{options.KvCachePrecision}' is unknown; use Float32 or BFloat16.");
        }

        if (options.MaxQueuedRequests < 1)
        {
            problems.Add($"MaxQueuedRequests {options.MaxQueuedRequests} must be ≥ 1 (a request waits in the queue until a worker takes it).");
        }

        if (options.Temperature is float t && !(t >= 0 && float.IsFinite(t)))
        {
            problems.Add($"Temperature {t} must be a finite number ≥ 0 (0 = greedy).");
        }

        if (options.TopP is float p && !(p > 0 && p <= 1))
        {
            problems.Add($"TopP {p} must be in (0, 1].");
        }

        if (options.TopK is < 0)
        {
            problems.Add($"TopK {options.TopK} must be ≥ 0 (0 disables it).");
        }

        if (options.RepetitionPenalty is float r && !(r > 0 && float.IsFinite(r)))
        {
            problems.Add($"RepetitionPenalty {r} must be a finite number > 0 (1 disables it).");
        }

        if (!float.IsFinite(options.FrequencyPenalty) || !float.IsFinite(options.PresencePenalty))
        {
            problems.Add("FrequencyPenalty and PresencePenalty must be finite numbers.");
        }

        if (options.PenaltyWindow < 0)
        {
            problems.Add($"PenaltyWindow {options.PenaltyWindow} must be ≥ 0 (0 = the whole context).");
        }

        return [.. problems];
    }
}
