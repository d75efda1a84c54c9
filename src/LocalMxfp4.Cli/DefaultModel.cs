namespace LocalMxfp4.Cli;

/// <summary>The model that ships beside the tool, used when <c>--model</c> is not given.</summary>
internal static class DefaultModel
{
    public static string Path => System.IO.Path.Combine(AppContext.BaseDirectory, "models", "stories260K");

    public static string Resolve(string? requested)
    {
        if (!string.IsNullOrWhiteSpace(requested))
        {
            return requested;
        }

        return Directory.Exists(Path)
            ? Path
            : throw new DirectoryNotFoundException($"No --model given and the bundled model is missing at {Path}.");
    }
}
