namespace LocalMxfp4.Models.Checkpoint;

/// <summary>A checkpoint's tensors do not fit its configuration (missing tensor, wrong shape or dtype).</summary>
public sealed class ModelLoadException : Exception
{
    /// <summary>Creates the exception; the message names the file and tensor.</summary>
    public ModelLoadException(string filePath, string? tensorName, string message, Exception? inner = null)
        : base(tensorName is null ? $"{filePath}: {message}" : $"{filePath}: tensor '{tensorName}': {message}", inner)
    {
        FilePath = filePath;
        TensorName = tensorName;
    }

    /// <summary>The file (or directory) at fault.</summary>
    public string FilePath { get; }

    /// <summary>The tensor at fault, when one is.</summary>
    public string? TensorName { get; }
}
