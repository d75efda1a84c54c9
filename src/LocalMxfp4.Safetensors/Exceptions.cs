namespace LocalMxfp4.Safetensors;

/// <summary>
/// A safetensors file or sharded-checkpoint index is malformed. The message always names the file and,
/// where one is involved, the tensor.
/// </summary>
public class SafetensorsFormatException : Exception
{
    /// <summary>Creates the exception; the message is composed from the file, tensor and detail.</summary>
    /// <param name="filePath">The offending file (a <c>.safetensors</c> file or an index JSON).</param>
    /// <param name="tensorName">The tensor concerned, or null when the problem is not tied to one.</param>
    /// <param name="detail">What is wrong.</param>
    /// <param name="innerException">The underlying error, if any.</param>
    public SafetensorsFormatException(string filePath, string? tensorName, string detail, Exception? innerException = null)
        : base(Compose(filePath, tensorName, detail), innerException)
    {
        FilePath = filePath;
        TensorName = tensorName;
    }

    /// <summary>The offending file.</summary>
    public string FilePath { get; }

    /// <summary>The tensor concerned, or null.</summary>
    public string? TensorName { get; }

    private static string Compose(string filePath, string? tensorName, string detail) =>
        tensorName is null
            ? $"Malformed safetensors data in '{filePath}': {detail}"
            : $"Malformed safetensors data in '{filePath}', tensor '{tensorName}': {detail}";
}

/// <summary>
/// A tensor was asked for by name and is not in the file or checkpoint. Derives from
/// <see cref="KeyNotFoundException"/> so dictionary-style handlers still catch it.
/// </summary>
public class SafetensorsTensorNotFoundException : KeyNotFoundException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="filePath">The file, index or directory that was searched.</param>
    /// <param name="tensorName">The name that was not found.</param>
    public SafetensorsTensorNotFoundException(string filePath, string tensorName)
        : base($"Tensor '{tensorName}' was not found in '{filePath}'.")
    {
        FilePath = filePath;
        TensorName = tensorName;
    }

    /// <summary>The file, index or directory that was searched.</summary>
    public string FilePath { get; }

    /// <summary>The name that was not found.</summary>
    public string TensorName { get; }
}

/// <summary>A tensor's dtype cannot be converted by the requested operation (e.g. reading I32 as float32).</summary>
public class SafetensorsDTypeNotSupportedException : NotSupportedException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="filePath">The file holding the tensor.</param>
    /// <param name="tensorName">The tensor.</param>
    /// <param name="dtype">Its dtype.</param>
    /// <param name="operation">What was attempted, e.g. "conversion to float32".</param>
    public SafetensorsDTypeNotSupportedException(string filePath, string tensorName, SafetensorsDType dtype, string operation)
        : base($"Tensor '{tensorName}' in '{filePath}' has dtype {SafetensorsDTypes.ToName(dtype)}, which does not support {operation}.")
    {
        FilePath = filePath;
        TensorName = tensorName;
        DType = dtype;
    }

    /// <summary>The file holding the tensor.</summary>
    public string FilePath { get; }

    /// <summary>The tensor.</summary>
    public string TensorName { get; }

    /// <summary>The tensor's dtype.</summary>
    public SafetensorsDType DType { get; }
}
