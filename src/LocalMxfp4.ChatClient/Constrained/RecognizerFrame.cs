namespace LocalMxfp4.ChatClient.Constrained;

/// <summary>What a <see cref="RecognizerFrame"/> is matching.</summary>
internal enum FrameKind : byte
{
    Root,
    Object,
    Array,
    String,
    Number,
    Literal,
}

/// <summary>
/// One level of a <see cref="JsonRecognizer"/>'s stack. A plain struct with generic slots (A–E, L) whose meaning
/// depends on <see cref="Kind"/>, so that saving and restoring state while the token trie is walked is a copy of a
/// few dozen bytes, never an allocation.
/// </summary>
/// <remarks>
/// Root: A = values written. Object: A/B = key range, C = key bytes matched, D = current property (cursor), E = chosen
/// tool (tool calls). Array: A = items started. String: A = characters, B = pending UTF-8 continuation bytes (or the
/// format segment), C = \u digits read (or position in the segment), D = \u value (or segment range start), E = allowed
/// range of the next continuation byte (or segment range end). Number: the <see cref="NumberState"/> (A = integer
/// digits, B = fraction digits, L = mantissa). Literal: A/B = range, C = bytes matched.
/// </remarks>
internal struct RecognizerFrame
{
    public FrameKind Kind;
    public byte Phase;
    public byte Whitespace;
    public bool Negative;
    public int Node;
    public int A;
    public int B;
    public int C;
    public int D;
    public int E;
    public long L;

    /// <summary>Bytes every frame below this one still needs once this one is complete.</summary>
    public int BaseDistance;
}
