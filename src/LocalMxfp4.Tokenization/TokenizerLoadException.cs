namespace LocalMxfp4.Tokenization;

/// <summary>
/// Thrown when tokenizer files are missing, unreadable, corrupt or in an unsupported shape.
/// The message always names the offending file (and, for line-based formats, the line).
/// </summary>
public class TokenizerLoadException : Exception
{
    /// <summary>Creates an exception for <paramref name="filePath"/>.</summary>
    /// <param name="message">What went wrong; the file path is prefixed automatically.</param>
    /// <param name="filePath">The file (or directory, when no file could be found) that could not be loaded.</param>
    /// <param name="lineNumber">The 1-based line of a text file where the problem was found, if any.</param>
    /// <param name="innerException">The underlying I/O, JSON or library error, if any.</param>
    public TokenizerLoadException(string message, string filePath, int? lineNumber = null, Exception? innerException = null)
        : base(Format(message, filePath, lineNumber), innerException)
    {
        FilePath = filePath;
        LineNumber = lineNumber;
    }

    /// <summary>The file (or directory) that could not be loaded.</summary>
    public string FilePath { get; }

    /// <summary>The 1-based line number of the problem in a text file, when known.</summary>
    public int? LineNumber { get; }

    private static string Format(string message, string filePath, int? lineNumber) =>
        lineNumber is int line ? $"{filePath}:{line}: {message}" : $"{filePath}: {message}";
}
