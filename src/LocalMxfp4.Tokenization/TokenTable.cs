using System.Text;

namespace LocalMxfp4.Tokenization;

/// <summary>
/// The id → UTF-8 bytes table that all decoding goes through, stored as one blob plus offsets so a
/// 128k-token vocabulary costs about a megabyte and lookups are a slice.
/// </summary>
internal sealed class TokenTable
{
    private readonly byte[] _blob;
    private readonly int[] _offsets;
    private readonly TokenKind[] _kinds;

    private TokenTable(byte[] blob, int[] offsets, TokenKind[] kinds)
    {
        _blob = blob;
        _offsets = offsets;
        _kinds = kinds;
    }

    public int Count => _kinds.Length;

    public ReadOnlySpan<byte> Bytes(int id) => _blob.AsSpan(_offsets[id], _offsets[id + 1] - _offsets[id]);

    public TokenKind Kind(int id) => _kinds[id];

    /// <summary>
    /// Builds the table from per-id ordinary bytes and the special names (which may extend past the base vocabulary).
    /// Ids with no entry at all (gaps) decode to nothing.
    /// </summary>
    public static TokenTable Build(byte[]?[] baseBytes, TokenKind[] baseKinds, IReadOnlyDictionary<int, string> specials,
        IReadOnlyDictionary<int, string>? addedText = null)
    {
        int count = baseBytes.Length;
        foreach (int id in specials.Keys)
        {
            count = Math.Max(count, id + 1);
        }

        if (addedText is not null)
        {
            foreach (int id in addedText.Keys)
            {
                count = Math.Max(count, id + 1);
            }
        }

        var bytes = new byte[]?[count];
        var kinds = new TokenKind[count];
        Array.Copy(baseBytes, bytes, baseBytes.Length);
        Array.Copy(baseKinds, kinds, baseKinds.Length);
        if (addedText is not null)
        {
            foreach (var (id, text) in addedText)
            {
                bytes[id] = Encoding.UTF8.GetBytes(text);
                kinds[id] = TokenKind.Normal;
            }
        }

        foreach (var (id, name) in specials)
        {
            bytes[id] = Encoding.UTF8.GetBytes(name);
            kinds[id] = TokenKind.Special;
        }

        long total = 0;
        foreach (byte[]? b in bytes)
        {
            total += b?.Length ?? 0;
        }

        var blob = new byte[total];
        var offsets = new int[count + 1];
        int pos = 0;
        for (int i = 0; i < count; i++)
        {
            offsets[i] = pos;
            if (bytes[i] is { } b)
            {
                b.CopyTo(blob, pos);
                pos += b.Length;
            }
        }

        offsets[count] = pos;
        return new TokenTable(blob, offsets, kinds);
    }
}
