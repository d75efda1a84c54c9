namespace LocalMxfp4.Models.Checkpoint;

/// <summary>
/// Writes a model directory atomically: everything goes into a hidden temporary sibling, which is renamed into place
/// only when complete. An interrupted run leaves nothing that loads as a model, and an existing directory is
/// replaced only after the new one is whole (moved aside first, restored if the rename fails).
/// </summary>
public static class ModelDirectoryWriter
{
    /// <summary>Files beside the weights that a model directory carries along (tokenizer, generation defaults, licenses).</summary>
    public static IReadOnlyList<string> CompanionFiles { get; } =
    [
        "generation_config.json", "tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
        "LICENSE", "LICENSE.txt", "USE_POLICY.md", "README.md", "original/tokenizer.model",
    ];

    /// <summary>Runs <paramref name="fill"/> on a fresh temporary directory, then publishes it as <paramref name="outputDirectory"/>.</summary>
    /// <exception cref="IOException">The output exists, is not empty, and <paramref name="overwrite"/> is false.</exception>
    public static void Write(string outputDirectory, bool overwrite, Action<string> fill)
    {
        ArgumentNullException.ThrowIfNull(fill);
        string output = Path.GetFullPath(outputDirectory);
        if (Directory.Exists(output) && Directory.EnumerateFileSystemEntries(output).Any() && !overwrite)
        {
            throw new IOException($"{output} exists and is not empty; choose another output or pass --overwrite.");
        }

        string parent = Path.GetDirectoryName(output) ?? ".";
        Directory.CreateDirectory(parent);
        string temp = Path.Combine(parent, $".{Path.GetFileName(output)}.partial-{Guid.NewGuid():N}");
        Directory.CreateDirectory(temp);
        try
        {
            fill(temp);
            Publish(temp, output);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
    }

    /// <summary>Copies the <see cref="CompanionFiles"/> present in <paramref name="sourceDirectory"/>.</summary>
    public static void CopyCompanionFiles(string sourceDirectory, string targetDirectory)
    {
        foreach (string file in CompanionFiles)
        {
            string from = Path.Combine(sourceDirectory, file);
            if (File.Exists(from))
            {
                string to = Path.Combine(targetDirectory, file);
                Directory.CreateDirectory(Path.GetDirectoryName(to)!);
                File.Copy(from, to, overwrite: true);
            }
        }
    }

    private static void Publish(string temp, string output)
    {
        if (!Directory.Exists(output))
        {
            Directory.Move(temp, output);
            return;
        }

        string old = output + $".old-{Guid.NewGuid():N}";
        Directory.Move(output, old);
        try
        {
            Directory.Move(temp, output);
        }
        catch
        {
            Directory.Move(old, output);
            throw;
        }

        TryDelete(old);
    }

    private static void TryDelete(string directory)
    {
        try
        {
            if (Directory.Exists(directory))
            {
                Directory.Delete(directory, recursive: true);
            }
        }
        catch (IOException)
        {
            // Best effort: a leftover partial directory is hidden and never loads as a model.
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
