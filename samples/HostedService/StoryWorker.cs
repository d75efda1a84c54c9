using Microsoft.Extensions.AI;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;

namespace LocalMxfp4.Samples.HostedService;

/// <summary>A background service that asks the registered <see cref="IChatClient"/> one question, streams the reply, and stops the app.</summary>
internal sealed class StoryWorker(IChatClient chat, IConfiguration configuration, IHostApplicationLifetime lifetime) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            string prompt = configuration["Story:Prompt"] ?? "Once upon a time";
            Console.WriteLine($"prompt: {prompt}");
            Console.Write("reply:  ");
            var updates = new List<ChatResponseUpdate>();
            await foreach (ChatResponseUpdate update in chat.GetStreamingResponseAsync(prompt, cancellationToken: stoppingToken))
            {
                Console.Write(update.Text);
                updates.Add(update);
            }

            ChatResponse response = updates.ToChatResponse();
            Console.WriteLine();
            Console.WriteLine($"usage: {response.Usage?.InputTokenCount} input, {response.Usage?.OutputTokenCount} output tokens; finish {response.FinishReason}");
        }
        finally
        {
            lifetime.StopApplication();
        }
    }
}
