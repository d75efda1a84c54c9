namespace LocalMxfp4.Tokenization;

/// <summary>Tells the two formats that share the name <c>tokenizer.model</c> apart from their first bytes.</summary>
internal static class TokenizerFormatSniffer
{
    /// <summary>Tiktoken, SentencePiece, or null when the file looks like neither.</summary>
    public static TokenizerKind? Sniff(string path)
    {
        Span<byte> head = stackalloc byte[4096];
        int read;
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1);
            read = stream.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new TokenizerLoadException($"cannot read file: {ex.Message}", path, innerException: ex);
        }

        head = head[..read];
        if (head.IsEmpty)
        {
            return null;
        }

        // A ModelProto starts with field 1 (the pieces), length-delimited: tag byte 0x0A.
        if (head[0] == 0x0A)
        {
            return TokenizerKind.SentencePiece;
        }

        return LooksLikeTiktokenLine(head) ? TokenizerKind.Tiktoken : null;
    }

    private static bool LooksLikeTiktokenLine(ReadOnlySpan<byte> head)
    {
        int newline = head.IndexOf((byte)'\n');
        ReadOnlySpan<byte> line = newline >= 0 ? head[..newline] : head;
        line = line.TrimEnd((byte)'\r');
        int space = line.IndexOf((byte)' ');
        if (space <= 0 || space == line.Length - 1)
        {
            return false;
        }

        foreach (byte b in line[..space])
        {
            if (!(char.IsAsciiLetterOrDigit((char)b) || b is (byte)'+' or (byte)'/' or (byte)'='))
            {
                return false;
            }
        }

        foreach (byte b in line[(space + 1)..])
        {
            if (!char.IsAsciiDigit((char)b))
            {
                return false;
            }
        }

        return true;
    }
}
