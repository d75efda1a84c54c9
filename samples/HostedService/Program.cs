using LocalMxfp4.ChatClient;
using LocalMxfp4.Samples.HostedService;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

// A generic host with AddDuQuantChatClient bound to appsettings.json's "DuQuant" section. The options are validated
// and the model is loaded and warmed up before the host reports "started" (see the log lines). `--model DIR`
// (or any `--DuQuant:Key value`) overrides the settings.
HostApplicationBuilder builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings
{
    Args = args,
    ContentRootPath = AppContext.BaseDirectory,   // appsettings.json and the bundled model sit beside the program
});
builder.Configuration.AddCommandLine(args, new Dictionary<string, string> { ["--model"] = "DuQuant:ModelPath" });

builder.Services.AddDuQuantChatClient(builder.Configuration.GetSection(DuQuantChatClientOptions.SectionName))
    .UseLogging();
builder.Services.PostConfigure<DuQuantChatClientOptions>(o =>
{
    // A relative ModelPath from appsettings.json means "beside the program"; one given on the command line, the current directory.
    if (o.ModelPath is { } path && !Path.IsPathRooted(path) && !Directory.Exists(path) && !File.Exists(path))
    {
        o.ModelPath = Path.Combine(AppContext.BaseDirectory, path);
    }
});
builder.Services.AddHostedService<StoryWorker>();

try
{
    await builder.Build().RunAsync();
    return 0;
}
catch (OptionsValidationException e)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return 2;
}
