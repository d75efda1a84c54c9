using LocalMxfp4.Models.Configuration;

namespace LocalMxfp4.Models.Checkpoint;

/// <summary>
/// Where a model's parts are: a Hugging Face directory (config.json, safetensors, tokenizer files), or one
/// safetensors file inside such a directory (to pick, say, <c>model.bf16.safetensors</c> over <c>model.safetensors</c>).
/// </summary>
public sealed record ModelDirectory
{
    private ModelDirectory(string directory, string weights)
    {
        Directory = directory;
        Weights = weights;
    }

    /// <summary>The folder holding config.json and the tokenizer.</summary>
    public string Directory { get; }

    /// <summary>What to open for tensors: the folder itself or one file.</summary>
    public string Weights { get; }

    /// <summary>Resolves <paramref name="path"/> (a model folder or a safetensors file in one).</summary>
    public static ModelDirectory Resolve(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        string full = Path.GetFullPath(path);
        if (File.Exists(full))
        {
            if (!full.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase))
            {
                throw new ModelLoadException(full, null, "a model is a directory or a .safetensors file inside one.");
            }

            return new ModelDirectory(Path.GetDirectoryName(full)!, full);
        }

        if (!System.IO.Directory.Exists(full))
        {
            throw new ModelLoadException(full, null, "no such model directory or file.");
        }

        return new ModelDirectory(full, full);
    }

    /// <summary>Reads the configuration.</summary>
    public LlamaConfig LoadConfig() => LlamaConfig.Load(Directory);
}
