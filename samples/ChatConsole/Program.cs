using System.Diagnostics;
using System.Globalization;
using System.Text;
using LocalMxfp4.ChatClient;
using LocalMxfp4.Engine.Loading;
using LocalMxfp4.Samples.ChatConsole;
using Microsoft.Extensions.AI;

// A streaming console chat over DuQuantChatClient: multi-turn history, /reset, /system, and per-reply stats.
Console.OutputEncoding = Encoding.UTF8;
SampleArguments arguments;
try
{
    arguments = SampleArguments.Parse(args);
}
catch (ArgumentException e)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return 2;
}

if (arguments.Help)
{
    Console.WriteLine(SampleArguments.Usage);
    return 0;
}

DuQuantChatClient client;
DuQuantBackendInfo info;
try
{
    client = new DuQuantChatClient(new DuQuantChatClientOptions
    {
        ModelPath = arguments.ModelPath,
        ContextLength = arguments.ContextLength,
        DefaultMaxOutputTokens = arguments.MaxTokens,
        Temperature = arguments.Temperature,
        // A long chat keeps going: the oldest turns are dropped (and reported) when the context is full.
        ContextOverflowPolicy = ContextOverflowPolicy.DropOldestMessages,
        Backend = arguments.Backend,
        Device = arguments.Device,
    });
    DuQuantWarmUpResult warm = await client.WarmUpAsync();
    info = client.GetService<DuQuantBackendInfo>()!;
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"Loaded {info.ModelId} in {warm.LoadTime.TotalSeconds:F2} s ({info.Backend}, {info.WeightFormat} weights, {info.Threads} threads, context {info.ContextLength}, template {info.ChatTemplate})."));
    if (info.Backend == "cpu" && info.WeightFormat == "mxfp4" && AcceleratorBackends.LastFallbackReason is string reason)
    {
        Console.WriteLine($"(CUDA not used: {reason})");
    }
}
catch (Exception e) when (e is ArgumentException or IOException or InvalidOperationException or NotSupportedException or UnauthorizedAccessException)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return 2;
}

using (client)
{
    if (!info.IsChatModel)
    {
        Console.WriteLine($"Note: {client.Template!.Description} Type the start of a story.");
    }

    Console.WriteLine("Commands: /reset, /system TEXT, /exit. Ctrl+C stops a reply.");
    string? system = arguments.SystemPrompt;
    var history = new List<ChatMessage>();
    CancellationTokenSource? replying = null;
    Console.CancelKeyPress += (_, e) =>
    {
        if (replying is { IsCancellationRequested: false } current)
        {
            e.Cancel = true;
            current.Cancel();
        }
    };

    while (true)
    {
        Console.Write("> ");
        string? line = Console.ReadLine();
        if (line is null || line.Trim() is "/exit" or "/quit")
        {
            break;
        }

        line = line.Trim();
        if (line.Length == 0)
        {
            continue;
        }

        if (line == "/reset")
        {
            history.Clear();
            Console.WriteLine("(history cleared)");
            continue;
        }

        if (line.StartsWith("/system", StringComparison.Ordinal))
        {
            system = line["/system".Length..].Trim() is { Length: > 0 } s ? s : null;
            history.Clear();
            Console.WriteLine(system is null ? "(system prompt removed, history cleared)" : "(system prompt set, history cleared)");
            continue;
        }

        history.Add(new ChatMessage(ChatRole.User, line));
        List<ChatMessage> request = system is null ? history : [new ChatMessage(ChatRole.System, system), .. history];
        var reply = new StringBuilder();
        var clock = Stopwatch.StartNew();
        TimeSpan? firstText = null;
        UsageDetails? usage = null;
        ChatFinishReason? finish = null;
        DuQuantCompletion? completion = null;
        replying = new CancellationTokenSource();
        try
        {
            await foreach (ChatResponseUpdate update in client.GetStreamingResponseAsync(request, cancellationToken: replying.Token))
            {
                if (update.Text.Length > 0)
                {
                    firstText ??= clock.Elapsed;
                    Console.Write(update.Text);
                    reply.Append(update.Text);
                }

                usage = update.Contents.OfType<UsageContent>().FirstOrDefault()?.Details ?? usage;
                finish = update.FinishReason ?? finish;
                completion = update.RawRepresentation as DuQuantCompletion ?? completion;
            }

            Console.WriteLine();
            double tokensPerSecond = completion?.DecodeTokensPerSecond ?? 0;
            string dropped = completion is { DroppedMessages: > 0 } ? $", dropped {completion.DroppedMessages} old messages" : string.Empty;
            double ttftMs = (completion?.TimeToFirstToken ?? firstText ?? TimeSpan.Zero).TotalMilliseconds;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"[{usage?.OutputTokenCount} tokens, prompt {usage?.InputTokenCount}, TTFT {ttftMs:F1} ms, {tokensPerSecond:F1} tok/s, finish {finish}{dropped}]"));
            history.Add(new ChatMessage(ChatRole.Assistant, reply.ToString()));
        }
        catch (OperationCanceledException)
        {
            Console.WriteLine();
            Console.WriteLine("(reply stopped)");
            history.Add(new ChatMessage(ChatRole.Assistant, reply.ToString()));
        }
        catch (Exception e) when (e is DuQuantContextOverflowException or ArgumentException or NotSupportedException)
        {
            Console.WriteLine();
            Console.WriteLine($"error: {e.Message}");
            history.RemoveAt(history.Count - 1);
        }
        finally
        {
            replying.Dispose();
            replying = null;
        }
    }
}

return 0;
