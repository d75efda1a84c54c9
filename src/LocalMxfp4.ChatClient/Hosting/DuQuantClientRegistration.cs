namespace LocalMxfp4.ChatClient.Hosting;

/// <summary>Marks one registered client (keyed or not) so the warm-up service can find every client to warm.</summary>
/// <param name="ServiceKey">The DI key, or null for the unkeyed client.</param>
/// <param name="OptionsName">The named options the client reads.</param>
internal sealed record DuQuantClientRegistration(object? ServiceKey, string OptionsName);
