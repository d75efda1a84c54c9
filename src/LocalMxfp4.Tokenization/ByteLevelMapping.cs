namespace LocalMxfp4.Tokenization;

/// <summary>
/// GPT-2's reversible bytes↔unicode table, which byte-level BPE vocabularies (HF <c>tokenizer.json</c>)
/// use to spell arbitrary bytes as printable characters (space is 'Ġ', newline 'Ċ', …).
/// </summary>
internal static class ByteLevelMapping
{
    private static readonly short[] CharToByte = BuildCharToByte();
    private static readonly char[] ByteToChar = BuildByteToChar();

    /// <summary>The vocabulary character that spells byte <paramref name="value"/>.</summary>
    public static char ToChar(byte value) => ByteToChar[value];

    /// <summary>Maps one vocabulary character back to its byte; false if the character is not in the table.</summary>
    public static bool TryGetByte(char c, out byte value)
    {
        if (c < CharToByte.Length && CharToByte[c] >= 0)
        {
            value = (byte)CharToByte[c];
            return true;
        }

        value = 0;
        return false;
    }

    /// <summary>Decodes a byte-level vocabulary entry to raw bytes; null when it contains characters outside the table.</summary>
    public static byte[]? ToBytes(string token)
    {
        var bytes = new byte[token.Length];
        for (int i = 0; i < token.Length; i++)
        {
            if (!TryGetByte(token[i], out bytes[i]))
            {
                return null;
            }
        }

        return bytes;
    }

    private static char[] BuildByteToChar()
    {
        var table = new char[256];
        for (int c = 0; c < CharToByte.Length; c++)
        {
            if (CharToByte[c] >= 0)
            {
                table[CharToByte[c]] = (char)c;
            }
        }

        return table;
    }

    private static short[] BuildCharToByte()
    {
        var table = new short[512];
        Array.Fill(table, (short)-1);
        int next = 256;
        for (int b = 0; b < 256; b++)
        {
            bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            int c = printable ? b : next++;
            table[c] = (short)b;
        }

        return table;
    }
}
