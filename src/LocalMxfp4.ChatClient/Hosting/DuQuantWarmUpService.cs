using LocalMxfp4.ChatClient.Telemetry;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace LocalMxfp4.ChatClient.Hosting;

/// <summary>
/// Loads every registered <see cref="DuQuantChatClient"/>'s model and runs a one-token generation while the host
/// starts (for clients whose <see cref="DuQuantChatClientOptions.WarmUpOnStart"/> is true), so "started" means ready:
/// the first user request pays neither the load nor the first-run costs. A model that cannot load stops the host
/// with the loader's error. Load time and time to first token are logged.
/// </summary>
internal sealed class DuQuantWarmUpService(
    IServiceProvider services,
    IEnumerable<DuQuantClientRegistration> registrations,
    IOptionsMonitor<DuQuantChatClientOptions> options,
    ILogger<DuQuantWarmUpService>? logger = null) : IHostedService
{
    private readonly ILogger _logger = (ILogger?)logger ?? NullLogger.Instance;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        foreach (DuQuantClientRegistration registration in registrations.Distinct())
        {
            DuQuantChatClient client = registration.ServiceKey is null
                ? services.GetRequiredService<DuQuantChatClient>()
                : services.GetRequiredKeyedService<DuQuantChatClient>(registration.ServiceKey);
            if (!options.Get(registration.OptionsName).WarmUpOnStart)
            {
                Log.WarmUpSkipped(_logger, client.ModelId);
                continue;
            }

            await client.WarmUpAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
