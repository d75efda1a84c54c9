namespace LocalMxfp4.TestSupport;

/// <summary>
/// Finds the team's read-only <c>shared/</c> folder (models, tokenizers, texts) that sits beside the
/// repository clone. Tests fail loudly when it is missing rather than skipping, so a green run always
/// means the real references were checked. <c>LOCALMXFP4_SHARED</c> overrides the location.
/// </summary>
internal static class SharedData
{
    private static readonly Lazy<string> RootPath = new(Locate);

    public static string Root => RootPath.Value;

    public static string Path(params string[] parts) => System.IO.Path.Combine([Root, .. parts]);

    public static string RepositoryRoot
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null && !File.Exists(System.IO.Path.Combine(dir.FullName, "LocalMxfp4.sln")))
            {
                dir = dir.Parent;
            }

            return dir?.FullName ?? throw new DirectoryNotFoundException(
                $"Cannot find LocalMxfp4.sln above {AppContext.BaseDirectory}.");
        }
    }

    private static string Locate()
    {
        string? fromEnv = Environment.GetEnvironmentVariable("LOCALMXFP4_SHARED");
        if (!string.IsNullOrEmpty(fromEnv))
        {
            return Directory.Exists(fromEnv)
                ? fromEnv
                : throw new DirectoryNotFoundException($"LOCALMXFP4_SHARED points to '{fromEnv}', which does not exist.");
        }

        string candidate = System.IO.Path.GetFullPath(System.IO.Path.Combine(RepositoryRoot, "..", "shared"));
        return Directory.Exists(candidate)
            ? candidate
            : throw new DirectoryNotFoundException(
                $"The shared data folder was not found at '{candidate}'. Clone the repository beside shared/ or set LOCALMXFP4_SHARED.");
    }
}
