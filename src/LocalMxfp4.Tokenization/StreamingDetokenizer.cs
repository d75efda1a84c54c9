using System.Text;

namespace LocalMxfp4.Tokenization;

/// <summary>
/// Turns generated ids into text incrementally. A character whose UTF-8 bytes are split across several tokens
/// (emoji, CJK, byte-fallback pieces) is held back until complete, so no U+FFFD is ever emitted for it;
/// the concatenation of all <see cref="Append"/> results plus <see cref="Flush"/> equals
/// <see cref="LlmTokenizer.Decode"/> of the same ids. Not thread-safe.
/// </summary>
public sealed class StreamingDetokenizer
{
    private readonly LlmTokenizer _tokenizer;
    private readonly Decoder _decoder = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: false).GetDecoder();
    private char[] _chars = new char[64];
    private bool _stripPending;

    internal StreamingDetokenizer(LlmTokenizer tokenizer, bool skipSpecialTokens)
    {
        _tokenizer = tokenizer;
        SkipSpecialTokens = skipSpecialTokens;
        _stripPending = tokenizer.StripsLeadingSpaceOnDecode;
    }

    /// <summary>Whether special tokens are dropped (true) or rendered by name (false).</summary>
    public bool SkipSpecialTokens { get; }

    /// <summary>
    /// Adds one id and returns the text it completes: possibly empty (a partial character is pending),
    /// possibly more than the token's own text (it completed a character begun by earlier tokens).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="id"/> is not a valid token id.</exception>
    public string Append(int id)
    {
        ReadOnlySpan<byte> bytes = _tokenizer.GetEmittedBytes(id, SkipSpecialTokens, ref _stripPending);
        return bytes.IsEmpty ? string.Empty : DecodeBytes(bytes, flush: false);
    }

    /// <summary>
    /// Ends the stream: returns any held-back bytes, which at this point can only be an incomplete character and
    /// therefore come out as U+FFFD. Later <see cref="Append"/> calls continue as if on a fresh line of text.
    /// </summary>
    public string Flush() => DecodeBytes([], flush: true);

    /// <summary>Discards held-back bytes and restarts as for a new sequence.</summary>
    public void Reset()
    {
        _decoder.Reset();
        _stripPending = _tokenizer.StripsLeadingSpaceOnDecode;
    }

    private string DecodeBytes(ReadOnlySpan<byte> bytes, bool flush)
    {
        // Up to three pending bytes from earlier calls can turn into characters now, hence the slack.
        int max = bytes.Length + 4;
        if (_chars.Length < max)
        {
            _chars = new char[Math.Max(max, _chars.Length * 2)];
        }

        int written = _decoder.GetChars(bytes, _chars, flush);
        return written == 0 ? string.Empty : new string(_chars, 0, written);
    }
}
