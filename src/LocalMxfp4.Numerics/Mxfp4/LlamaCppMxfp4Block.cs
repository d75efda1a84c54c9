namespace LocalMxfp4.Numerics.Mxfp4;

/// <summary>
/// Conversion between our interleaved layout (scales in their own plane, byte i = elements 2i | 2i+1 &lt;&lt; 4)
/// and llama.cpp's <c>block_mxfp4</c>: 17 bytes, the E8M0 byte first, then <c>qs[j]</c> holding element j in
/// the low nibble and element j + 16 in the high nibble. The scale byte has the same meaning in both.
/// </summary>
public static class LlamaCppMxfp4Block
{
    /// <summary>Bytes per llama.cpp block.</summary>
    public const int Size = 17;

    /// <summary>Converts <paramref name="scales"/>.Length blocks to llama.cpp blocks.</summary>
    public static void FromInterleaved(ReadOnlySpan<byte> packed, ReadOnlySpan<byte> scales, Span<byte> destination)
    {
        int blocks = scales.Length;
        if (packed.Length < blocks * 16 || destination.Length < blocks * Size)
        {
            throw new ArgumentException($"{blocks} blocks need {blocks * 16} packed bytes and {blocks * Size} destination bytes.");
        }

        Span<byte> codes = stackalloc byte[32];
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> src = packed.Slice(b * 16, 16);
            for (int i = 0; i < 16; i++)
            {
                codes[2 * i] = (byte)(src[i] & 0xF);
                codes[(2 * i) + 1] = (byte)(src[i] >> 4);
            }

            Span<byte> dst = destination.Slice(b * Size, Size);
            dst[0] = scales[b];
            for (int j = 0; j < 16; j++)
            {
                dst[1 + j] = (byte)(codes[j] | (codes[j + 16] << 4));
            }
        }
    }

    /// <summary>Converts llama.cpp blocks back to our packed nibbles and scale plane.</summary>
    public static void ToInterleaved(ReadOnlySpan<byte> source, Span<byte> packed, Span<byte> scales)
    {
        if (source.Length % Size != 0)
        {
            throw new ArgumentException($"llama.cpp MXFP4 data must be a whole number of {Size}-byte blocks; got {source.Length} bytes.", nameof(source));
        }

        int blocks = source.Length / Size;
        if (packed.Length < blocks * 16 || scales.Length < blocks)
        {
            throw new ArgumentException($"{blocks} blocks need {blocks * 16} packed bytes and {blocks} scale bytes.");
        }

        Span<byte> codes = stackalloc byte[32];
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> src = source.Slice(b * Size, Size);
            scales[b] = src[0];
            for (int j = 0; j < 16; j++)
            {
                codes[j] = (byte)(src[1 + j] & 0xF);
                codes[j + 16] = (byte)(src[1 + j] >> 4);
            }

            Span<byte> dst = packed.Slice(b * 16, 16);
            for (int i = 0; i < 16; i++)
            {
                dst[i] = (byte)(codes[2 * i] | (codes[(2 * i) + 1] << 4));
            }
        }
    }
}
