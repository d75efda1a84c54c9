using System.Globalization;
using System.Text.Json;
using LocalMxfp4.ChatClient.Constrained;
using LocalMxfp4.ChatClient.Loading;
using LocalMxfp4.ChatClient.Telemetry;
using LocalMxfp4.ChatClient.Templates;
using LocalMxfp4.ChatClient.Tools;
using LocalMxfp4.Engine.Sampling;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;

namespace LocalMxfp4.ChatClient.Generation;

/// <summary>
/// Resolves a request: settings in the order ChatOptions field → <see cref="DuQuantGenerationSettings"/> from
/// <c>RawRepresentationFactory</c> → AdditionalProperties extras → client options → the model's generation_config.json →
/// built-in defaults; then renders the prompt under the context-overflow policy. Every invalid value is reported here,
/// before anything is queued.
/// </summary>
internal static class RequestPlanner
{
    /// <summary>AdditionalProperties key for the CTRL-style repetition penalty (number, &gt; 0; 1 disables).</summary>
    public const string RepetitionPenaltyKey = "repetition_penalty";

    /// <summary>AdditionalProperties key for the penalty window in tokens (integer ≥ 0; 0 = whole context).</summary>
    public const string PenaltyWindowKey = "penalty_window";

    private const float BuiltInTemperature = 0.8f;
    private const float BuiltInTopP = 0.95f;

    public static RequestPlan Create(
        LoadedModel model, DuQuantChatClientOptions clientOptions, IEnumerable<ChatMessage> messages, ChatOptions? options, IChatClient client, ILogger logger,
        IReplyTokenLookup? replies = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        List<ChatMessage> list = [.. messages];
        if (list.Any(m => m is null))
        {
            throw new ArgumentException("The message list contains null.", nameof(messages));
        }

        DuQuantGenerationSettings raw = options?.RawRepresentationFactory?.Invoke(client) as DuQuantGenerationSettings ?? new DuQuantGenerationSettings();
        CheckUnsupported(options);
        ToolRequest tools = ToolRequest.Resolve(options, model.Template);
        if (tools.Ignored > 0)
        {
            Log.ToolsIgnored(logger, tools.Ignored, tools.IgnoredReason!);
        }

        // A required call and a JSON response format are both grammars; the call wins, as it is what the caller's
        // function-invocation loop waits for. Schema errors surface here, before anything is queued.
        JsonGrammar? grammar = null;
        string? formatInstructions = null;
        if (tools.Required)
        {
            grammar = tools.CallGrammar();
        }
        else if (options?.ResponseFormat is ChatResponseFormatJson json)
        {
            grammar = json.Schema is JsonElement schema ? JsonGrammar.FromSchema(schema) : JsonGrammar.AnyValue();
            formatInstructions = model.Template.IsChatFormat ? JsonFormatInstructions(json) : null;
        }

        float? repetition = raw.RepetitionPenalty;
        int? window = raw.PenaltyWindow;
        if (options?.AdditionalProperties is { } extras)
        {
            foreach ((string key, object? value) in extras)
            {
                switch (key)
                {
                    case RepetitionPenaltyKey:
                        repetition = (float)Number(key, value);
                        break;
                    case PenaltyWindowKey:
                        double w = Number(key, value);
                        window = w == Math.Floor(w) && w is >= 0 and <= int.MaxValue
                            ? (int)w
                            : throw new ArgumentException($"ChatOptions.AdditionalProperties[\"{key}\"] must be a whole number ≥ 0; got {value}.", nameof(options));
                        break;
                    default:
                        Log.UnknownAdditionalProperty(logger, key);
                        break;
                }
            }
        }

        var defaults = model.Engine.Config.Generation;
        bool greedyByDefault = defaults.DoSample == false;
        var sampling = new SamplingOptions
        {
            Temperature = options?.Temperature ?? raw.Temperature ?? clientOptions.Temperature
                ?? (greedyByDefault ? 0f : (float?)defaults.Temperature ?? BuiltInTemperature),
            TopP = options?.TopP ?? raw.TopP ?? clientOptions.TopP ?? (float?)defaults.TopP ?? BuiltInTopP,
            TopK = options?.TopK ?? raw.TopK ?? clientOptions.TopK ?? defaults.TopK ?? 0,
            FrequencyPenalty = options?.FrequencyPenalty ?? raw.FrequencyPenalty ?? clientOptions.FrequencyPenalty,
            PresencePenalty = options?.PresencePenalty ?? raw.PresencePenalty ?? clientOptions.PresencePenalty,
            RepetitionPenalty = repetition ?? clientOptions.RepetitionPenalty ?? (float?)defaults.RepetitionPenalty ?? 1f,
            PenaltyWindow = window ?? clientOptions.PenaltyWindow,
            Seed = FoldSeed(options?.Seed ?? raw.Seed) ?? clientOptions.Seed,
        };
        try
        {
            sampling.Validate();
        }
        catch (ArgumentOutOfRangeException e)
        {
            throw new ArgumentException($"Invalid sampling setting in ChatOptions or DuQuantChatClientOptions: {e.Message}", nameof(options), e);
        }

        int? requestedMax = options?.MaxOutputTokens ?? raw.MaxOutputTokens;
        if (requestedMax is <= 0)
        {
            throw new ArgumentException($"ChatOptions.MaxOutputTokens must be ≥ 1; got {requestedMax}.", nameof(options));
        }

        var stops = new List<string>();
        foreach (string? stop in (options?.StopSequences ?? []).Concat(raw.StopSequences))
        {
            if (string.IsNullOrEmpty(stop))
            {
                throw new ArgumentException("ChatOptions.StopSequences contains an empty string; every stop sequence needs at least one character.", nameof(options));
            }

            if (!stops.Contains(stop))
            {
                stops.Add(stop);
            }
        }

        string? instructions = formatInstructions is null ? options?.Instructions
            : string.IsNullOrWhiteSpace(options?.Instructions) ? formatInstructions
            : options.Instructions.Trim() + "\n\n" + formatInstructions;
        (IReadOnlyList<int> prompt, int dropped) = Render(model, clientOptions.ContextOverflowPolicy, list, instructions, tools.Shown, replies, logger);
        int room = model.ContextLength - prompt.Count;
        int maxOutput = Math.Min(requestedMax ?? clientOptions.DefaultMaxOutputTokens, room);
        return new RequestPlan
        {
            PromptTokenIds = prompt,
            Sampling = sampling,
            MaxOutputTokens = maxOutput,
            // Constrained output ends when the grammar says so: a stop string such as "}" or "\n" inside the JSON would
            // cut it into something that no longer parses.
            StopSequences = grammar is null ? stops : [],
            DroppedMessages = dropped,
            IgnoredTools = tools.Ignored,
            TokenMask = grammar is null ? null
                : new GrammarTokenMask(grammar, VocabularyIndex.For(model.Tokenizer), model.StopTokenIds, maxOutput, model.Engine.Config.VocabularySize),
            Parser = tools.ParsesCalls
                ? new ToolCallResponseParser(tools.Names, tools.AllowMultiple, model.Tokenizer.TryGetSpecialTokenId("<|python_tag|>"))
                : new TextResponseParser(),
        };
    }

    /// <summary>
    /// What a chat model is told about a JSON response format. The grammar alone guarantees the shape, but a model that
    /// knows the schema fills it with meaningful values instead of being pushed key by key.
    /// </summary>
    internal static string JsonFormatInstructions(ChatResponseFormatJson json)
    {
        if (json.Schema is not JsonElement schema)
        {
            return "Reply with a single JSON value and nothing else.";
        }

        string name = string.IsNullOrWhiteSpace(json.SchemaName) ? "" : $" \"{json.SchemaName}\"";
        string description = string.IsNullOrWhiteSpace(json.SchemaDescription) ? "" : $" ({json.SchemaDescription.Trim()})";
        return $"Reply with a single JSON value and nothing else. It must conform to the JSON schema{name}{description}:\n{schema.GetRawText()}";
    }

    private static void CheckUnsupported(ChatOptions? options)
    {
        if (options is null)
        {
            return;
        }

        if (options.ContinuationToken is not null)
        {
            throw new NotSupportedException("ChatOptions.ContinuationToken: DuQuantChatClient has no background responses to continue; every request runs to completion.");
        }
    }

    private static (IReadOnlyList<int> Prompt, int Dropped) Render(
        LoadedModel model, ContextOverflowPolicy policy, List<ChatMessage> messages, string? instructions, IReadOnlyList<AIFunctionDeclaration> tools, IReplyTokenLookup? replies, ILogger logger)
    {
        // LLaMA-3 re-emits earlier replies from the ids they were generated as, so the prompt starts with exactly the
        // tokens the prefix cache holds.
        IReadOnlyList<int> RenderOnce() => model.Template is Llama3ChatTemplate llama3 && replies is not null
            ? llama3.Render(messages, instructions, tools, model.Tokenizer, replies)
            : tools.Count > 0 && model.Template is IToolCallingChatTemplate withTools
            ? withTools.Render(messages, instructions, tools, model.Tokenizer)
            : model.Template.Render(messages, instructions, model.Tokenizer);

        IReadOnlyList<int> prompt = RenderOnce();
        int dropped = 0;
        while (prompt.Count + 1 > model.ContextLength)
        {
            if (policy != ContextOverflowPolicy.DropOldestMessages)
            {
                throw new DuQuantContextOverflowException(prompt.Count, model.ContextLength, model.Engine.Config.MaxPositions, policy);
            }

            // The oldest message that is neither a system message nor the last one.
            int victim = messages.FindIndex(m => m.Role != ChatRole.System);
            if (victim < 0 || victim == messages.Count - 1)
            {
                throw new DuQuantContextOverflowException(prompt.Count, model.ContextLength, model.Engine.Config.MaxPositions, policy);
            }

            messages.RemoveAt(victim);
            dropped++;
            // A tool call and its results go together: an ipython turn without the call it answers (or the reverse)
            // breaks the LLaMA-3.1 tool format.
            while (victim < messages.Count - 1 && messages[victim].Role == ChatRole.Tool)
            {
                messages.RemoveAt(victim);
                dropped++;
            }

            prompt = RenderOnce();
        }

        if (dropped > 0)
        {
            Log.MessagesDropped(logger, dropped, prompt.Count, model.ContextLength);
        }

        return (prompt, dropped);
    }

    /// <summary>Seeds in the 32-bit range are used as they are; larger ones are folded (high half XOR low half).</summary>
    internal static int? FoldSeed(long? seed) => seed switch
    {
        null => null,
        >= int.MinValue and <= int.MaxValue => (int)seed.Value,
        _ => unchecked((int)(seed.Value ^ (seed.Value >>> 32))),
    };

    private static double Number(string key, object? value)
    {
        double? number = value switch
        {
            float f => f,
            double d => d,
            int i => i,
            long l => l,
            decimal m => (double)m,
            string s when double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double parsed) => parsed,
            JsonElement { ValueKind: JsonValueKind.Number } e => e.GetDouble(),
            _ => null,
        };
        return number is double n && double.IsFinite(n)
            ? n
            : throw new ArgumentException($"ChatOptions.AdditionalProperties[\"{key}\"] must be a finite number; got {value ?? "null"}.", nameof(value));
    }
}
