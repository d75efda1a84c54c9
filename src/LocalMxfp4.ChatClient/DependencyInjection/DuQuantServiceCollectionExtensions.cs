using LocalMxfp4.ChatClient;
using LocalMxfp4.ChatClient.Hosting;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using System.Diagnostics.Metrics;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>
/// Registers <see cref="DuQuantChatClient"/> as the app's <see cref="IChatClient"/>. Each method returns MEAI's
/// <see cref="ChatClientBuilder"/>, so middleware chains on: <c>.UseFunctionInvocation().UseLogging().UseOpenTelemetry()</c>.
/// The options are validated when the host starts, and a hosted service loads the model and runs a one-token warm-up
/// (unless <see cref="DuQuantChatClientOptions.WarmUpOnStart"/> is false). The client itself is also registered
/// (as <see cref="DuQuantChatClient"/>, keyed like the <see cref="IChatClient"/>); one model per registration.
/// </summary>
public static class DuQuantServiceCollectionExtensions
{
    /// <summary>Registers the client with options set in code.</summary>
    /// <param name="services">The services.</param>
    /// <param name="configure">Sets the options (at least <see cref="DuQuantChatClientOptions.ModelPath"/>).</param>
    /// <param name="lifetime">Lifetime of the <see cref="IChatClient"/> pipeline (the client itself is a singleton: it owns the model).</param>
    public static ChatClientBuilder AddDuQuantChatClient(
        this IServiceCollection services, Action<DuQuantChatClientOptions> configure, ServiceLifetime lifetime = ServiceLifetime.Singleton)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configure);
        return Register(services, null, Options.Options.DefaultName, o => o.Configure(configure), lifetime);
    }

    /// <summary>Registers the client with options bound from a configuration section (e.g. <c>configuration.GetSection("DuQuant")</c>).</summary>
    /// <param name="services">The services.</param>
    /// <param name="configuration">The section whose keys are <see cref="DuQuantChatClientOptions"/> property names.</param>
    /// <param name="configure">Further settings applied after binding.</param>
    /// <param name="lifetime">Lifetime of the <see cref="IChatClient"/> pipeline.</param>
    public static ChatClientBuilder AddDuQuantChatClient(
        this IServiceCollection services, IConfiguration configuration, Action<DuQuantChatClientOptions>? configure = null, ServiceLifetime lifetime = ServiceLifetime.Singleton)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configuration);
        return Register(services, null, Options.Options.DefaultName, o => Bind(o, configuration, configure), lifetime);
    }

    /// <summary>Registers a client under <paramref name="serviceKey"/> (resolve it with <c>[FromKeyedServices(key)] IChatClient</c>).</summary>
    /// <param name="services">The services.</param>
    /// <param name="serviceKey">The key of the <see cref="IChatClient"/> and of the <see cref="DuQuantChatClient"/>.</param>
    /// <param name="configure">Sets the options.</param>
    /// <param name="lifetime">Lifetime of the <see cref="IChatClient"/> pipeline.</param>
    public static ChatClientBuilder AddKeyedDuQuantChatClient(
        this IServiceCollection services, object serviceKey, Action<DuQuantChatClientOptions> configure, ServiceLifetime lifetime = ServiceLifetime.Singleton)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(serviceKey);
        ArgumentNullException.ThrowIfNull(configure);
        return Register(services, serviceKey, OptionsName(serviceKey), o => o.Configure(configure), lifetime);
    }

    /// <summary>Registers a client under <paramref name="serviceKey"/> with options bound from a configuration section.</summary>
    /// <param name="services">The services.</param>
    /// <param name="serviceKey">The key of the <see cref="IChatClient"/> and of the <see cref="DuQuantChatClient"/>.</param>
    /// <param name="configuration">The section to bind.</param>
    /// <param name="configure">Further settings applied after binding.</param>
    /// <param name="lifetime">Lifetime of the <see cref="IChatClient"/> pipeline.</param>
    public static ChatClientBuilder AddKeyedDuQuantChatClient(
        this IServiceCollection services, object serviceKey, IConfiguration configuration, Action<DuQuantChatClientOptions>? configure = null, ServiceLifetime lifetime = ServiceLifetime.Singleton)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(serviceKey);
        ArgumentNullException.ThrowIfNull(configuration);
        return Register(services, serviceKey, OptionsName(serviceKey), o => Bind(o, configuration, configure), lifetime);
    }

    /// <summary>The named-options name used for a keyed client's <see cref="DuQuantChatClientOptions"/>.</summary>
    public static string OptionsName(object serviceKey)
    {
        ArgumentNullException.ThrowIfNull(serviceKey);
        return "DuQuant:" + (serviceKey.ToString() ?? serviceKey.GetType().Name);
    }

    private static void Bind(OptionsBuilder<DuQuantChatClientOptions> builder, IConfiguration configuration, Action<DuQuantChatClientOptions>? configure)
    {
        builder.Bind(configuration);
        if (configure is not null)
        {
            builder.Configure(configure);
        }
    }

    private static ChatClientBuilder Register(
        IServiceCollection services, object? serviceKey, string optionsName, Action<OptionsBuilder<DuQuantChatClientOptions>> configureOptions, ServiceLifetime lifetime)
    {
        configureOptions(services.AddOptions<DuQuantChatClientOptions>(optionsName).ValidateOnStart());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<DuQuantChatClientOptions>, DuQuantChatClientOptionsValidator>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, DuQuantWarmUpService>());
        services.AddSingleton(new DuQuantClientRegistration(serviceKey, optionsName));

        if (serviceKey is null)
        {
            services.TryAddSingleton(sp => Create(sp, optionsName));
            return services.AddChatClient(sp => new SharedClient(sp.GetRequiredService<DuQuantChatClient>()), lifetime);
        }

        services.TryAddKeyedSingleton(serviceKey, (sp, _) => Create(sp, optionsName));
        return services.AddKeyedChatClient(serviceKey, sp => new SharedClient(sp.GetRequiredKeyedService<DuQuantChatClient>(serviceKey)), lifetime);
    }

    /// <summary>
    /// The singleton client as the pipeline's innermost client. A scoped or transient pipeline is disposed with its
    /// scope, and middleware disposes its inner client; the model must outlive that, so only the container's own
    /// disposal of the singleton releases it.
    /// </summary>
    private sealed class SharedClient(IChatClient inner) : DelegatingChatClient(inner)
    {
        protected override void Dispose(bool disposing)
        {
            // Deliberately not disposing the shared DuQuantChatClient.
        }
    }

    private static DuQuantChatClient Create(IServiceProvider services, string optionsName)
    {
        // Get() runs the validators, so an invalid configuration fails here too when the host was not started.
        DuQuantChatClientOptions options = services.GetRequiredService<IOptionsMonitor<DuQuantChatClientOptions>>().Get(optionsName);
        return new DuQuantChatClient(options, services.GetService<ILoggerFactory>(), services.GetService<IMeterFactory>());
    }
}
