namespace LocalMxfp4.Tokenization;

/// <summary>How a token's bytes take part in decoding.</summary>
internal enum TokenKind : byte
{
    /// <summary>Ordinary text; its bytes are emitted as they are.</summary>
    Normal = 0,

    /// <summary>A control/added token; its bytes are its name and are emitted only when specials are rendered.</summary>
    Special = 1,

    /// <summary>A SentencePiece byte-fallback piece (<c>&lt;0xNN&gt;</c>) that stands for one raw byte.</summary>
    Byte = 2,
}
