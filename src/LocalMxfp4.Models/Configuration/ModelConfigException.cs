namespace LocalMxfp4.Models.Configuration;

/// <summary>A model configuration file is missing, malformed, or contradicts itself.</summary>
public sealed class ModelConfigException : Exception
{
    /// <summary>Creates the exception for <paramref name="filePath"/>, optionally naming the JSON field at fault.</summary>
    public ModelConfigException(string filePath, string? field, string message, Exception? inner = null)
        : base(field is null ? $"{filePath}: {message}" : $"{filePath}: field '{field}': {message}", inner)
    {
        FilePath = filePath;
        Field = field;
    }

    /// <summary>The configuration file.</summary>
    public string FilePath { get; }

    /// <summary>The field at fault, when one is.</summary>
    public string? Field { get; }
}
