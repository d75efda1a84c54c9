using LocalMxfp4.ChatClient;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.SemanticKernel.ChatCompletion;

namespace Microsoft.SemanticKernel;

/// <summary>
/// Registers <see cref="DuQuantChatClient"/> for Semantic Kernel: as the kernel's <see cref="IChatClient"/> and as its
/// <see cref="IChatCompletionService"/>, so <c>kernel.InvokePromptAsync</c>, chat history and plugins work. By default
/// the client pipeline gets <c>UseKernelFunctionInvocation()</c> (SK's filter-aware function invocation), as SK's own
/// local connectors do. With a service id both services are keyed by it (select it with
/// <c>PromptExecutionSettings.ServiceId</c>).
/// </summary>
public static class DuQuantSemanticKernelExtensions
{
    /// <summary>Adds a DuQuant chat-completion service to a kernel builder.</summary>
    /// <param name="builder">The kernel builder.</param>
    /// <param name="configure">Sets the client options (at least <see cref="DuQuantChatClientOptions.ModelPath"/>).</param>
    /// <param name="serviceId">Optional service id (DI key).</param>
    /// <param name="configurePipeline">Builds the client pipeline; null applies <c>UseKernelFunctionInvocation()</c>.</param>
    public static IKernelBuilder AddDuQuantChatCompletion(
        this IKernelBuilder builder, Action<DuQuantChatClientOptions> configure, string? serviceId = null, Action<ChatClientBuilder>? configurePipeline = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.AddDuQuantChatCompletion(configure, serviceId, configurePipeline);
        return builder;
    }

    /// <summary>Adds a DuQuant chat-completion service with options bound from configuration.</summary>
    /// <param name="builder">The kernel builder.</param>
    /// <param name="configuration">The section to bind (e.g. <c>configuration.GetSection("DuQuant")</c>).</param>
    /// <param name="serviceId">Optional service id (DI key).</param>
    /// <param name="configurePipeline">Builds the client pipeline; null applies <c>UseKernelFunctionInvocation()</c>.</param>
    public static IKernelBuilder AddDuQuantChatCompletion(
        this IKernelBuilder builder, IConfiguration configuration, string? serviceId = null, Action<ChatClientBuilder>? configurePipeline = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.AddDuQuantChatCompletion(configuration, serviceId, configurePipeline);
        return builder;
    }

    /// <summary>Adds a DuQuant chat client and an <see cref="IChatCompletionService"/> over it to a service collection.</summary>
    /// <param name="services">The services.</param>
    /// <param name="configure">Sets the client options.</param>
    /// <param name="serviceId">Optional service id (DI key).</param>
    /// <param name="configurePipeline">Builds the client pipeline; null applies <c>UseKernelFunctionInvocation()</c>.</param>
    public static IServiceCollection AddDuQuantChatCompletion(
        this IServiceCollection services, Action<DuQuantChatClientOptions> configure, string? serviceId = null, Action<ChatClientBuilder>? configurePipeline = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configure);
        ChatClientBuilder pipeline = serviceId is null
            ? services.AddDuQuantChatClient(configure)
            : services.AddKeyedDuQuantChatClient(serviceId, configure);
        return Finish(services, pipeline, serviceId, configurePipeline);
    }

    /// <summary>Adds a DuQuant chat client (options bound from configuration) and an <see cref="IChatCompletionService"/> over it.</summary>
    /// <param name="services">The services.</param>
    /// <param name="configuration">The section to bind.</param>
    /// <param name="serviceId">Optional service id (DI key).</param>
    /// <param name="configurePipeline">Builds the client pipeline; null applies <c>UseKernelFunctionInvocation()</c>.</param>
    public static IServiceCollection AddDuQuantChatCompletion(
        this IServiceCollection services, IConfiguration configuration, string? serviceId = null, Action<ChatClientBuilder>? configurePipeline = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configuration);
        ChatClientBuilder pipeline = serviceId is null
            ? services.AddDuQuantChatClient(configuration)
            : services.AddKeyedDuQuantChatClient(serviceId, configuration);
        return Finish(services, pipeline, serviceId, configurePipeline);
    }

    /// <summary>
    /// Registers SK's <see cref="IChatCompletionService"/> over an <see cref="IChatClient"/> already registered (for
    /// example with <c>AddDuQuantChatClient(...).UseFunctionInvocation()</c>), keyed by <paramref name="serviceId"/> if given.
    /// </summary>
    /// <param name="services">The services.</param>
    /// <param name="serviceId">The key of the registered <see cref="IChatClient"/>, or null for the unkeyed one.</param>
    public static IServiceCollection AddChatCompletionServiceFromChatClient(this IServiceCollection services, string? serviceId = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        if (serviceId is null)
        {
            services.AddSingleton(sp => sp.GetRequiredService<IChatClient>().AsChatCompletionService(sp));
        }
        else
        {
            services.AddKeyedSingleton(serviceId, (sp, key) => sp.GetRequiredKeyedService<IChatClient>(key).AsChatCompletionService(sp));
        }

        return services;
    }

    private static IServiceCollection Finish(IServiceCollection services, ChatClientBuilder pipeline, string? serviceId, Action<ChatClientBuilder>? configurePipeline)
    {
        if (configurePipeline is null)
        {
            pipeline.UseKernelFunctionInvocation();
        }
        else
        {
            configurePipeline(pipeline);
        }

        return services.AddChatCompletionServiceFromChatClient(serviceId);
    }
}
