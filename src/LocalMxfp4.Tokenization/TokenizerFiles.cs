namespace LocalMxfp4.Tokenization;

/// <summary>File access that turns I/O failures into <see cref="TokenizerLoadException"/>s naming the file.</summary>
internal static class TokenizerFiles
{
    public static byte[] ReadAllBytes(string path)
    {
        try
        {
            return File.ReadAllBytes(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
        {
            string reason = ex is FileNotFoundException or DirectoryNotFoundException ? "file not found." : $"cannot read file: {ex.Message}";
            throw new TokenizerLoadException(reason, path, innerException: ex);
        }
    }
}
