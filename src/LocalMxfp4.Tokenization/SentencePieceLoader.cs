using System.Globalization;
using System.Text;
using Microsoft.ML.Tokenizers;

namespace LocalMxfp4.Tokenization;

/// <summary>Loads SentencePiece <c>tokenizer.model</c> protobufs.</summary>
internal static class SentencePieceLoader
{
    // sentencepiece_model.proto: SentencePiece.Type
    private const int TypeUnknown = 2;
    private const int TypeControl = 3;
    private const int TypeByte = 6;

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    public static LlmTokenizer Load(string path, bool stripLeadingSpace)
    {
        byte[] data = TokenizerFiles.ReadAllBytes(path);
        List<(string Piece, int Type)> pieces = ReadPieces(data, path);

        LlamaTokenizer inner;
        try
        {
            // No extra special tokens: SentencePiece itself never matches control pieces in text, and neither does this.
            inner = LlamaTokenizer.Create(new MemoryStream(data, writable: false), addBeginOfSentence: false, addEndOfSentence: false);
        }
        catch (Exception ex) when (ex is not TokenizerLoadException)
        {
            throw new TokenizerLoadException($"Microsoft.ML.Tokenizers rejected the SentencePiece model: {ex.Message}", path, innerException: ex);
        }

        TokenizerConfig? config = TokenizerConfig.TryLoad(Path.GetDirectoryName(Path.GetFullPath(path)));

        var bytes = new byte[]?[pieces.Count];
        var kinds = new TokenKind[pieces.Count];
        var names = new Dictionary<int, string>();
        for (int id = 0; id < pieces.Count; id++)
        {
            var (piece, type) = pieces[id];
            if (type is TypeControl or TypeUnknown)
            {
                names[id] = piece;
            }
            else if (type == TypeByte && TryParseBytePiece(piece, out byte value))
            {
                bytes[id] = [value];
                kinds[id] = TokenKind.Byte;
            }
            else
            {
                bytes[id] = Encoding.UTF8.GetBytes(piece.Replace('\u2581', ' '));
            }
        }

        Dictionary<int, string>? addedText = null;
        if (config is not null)
        {
            foreach (var (id, (content, special)) in config.AddedTokens)
            {
                if (special)
                {
                    names[id] = content;
                }
                else if (id >= pieces.Count)
                {
                    (addedText ??= [])[id] = content;
                }
            }
        }

        SpecialTokenSet specials = SpecialTokenSet.Create(names);
        TokenTable table = TokenTable.Build(bytes, kinds, specials.ById, addedText);
        return new LlmTokenizer(TokenizerKind.SentencePiece, path, inner, table, specials, config,
            defaultBos: inner.BeginningOfSentenceId, defaultEos: [inner.EndOfSentenceId], stripLeadingSpace);
    }

    private static bool TryParseBytePiece(string piece, out byte value)
    {
        value = 0;
        return piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece[5] == '>'
            && byte.TryParse(piece.AsSpan(3, 2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out value);
    }

    /// <summary>Reads ModelProto.pieces (field 1): each piece's text (field 1) and type (field 3, default NORMAL).</summary>
    private static List<(string Piece, int Type)> ReadPieces(byte[] data, string path)
    {
        var pieces = new List<(string, int)>();
        var reader = new ProtoReader(data, path);
        while (!reader.AtEnd)
        {
            var (field, wireType) = reader.ReadTag();
            if (field == 1 && wireType == ProtoReader.LengthDelimited)
            {
                pieces.Add(ReadPiece(reader.ReadBytes(), path, pieces.Count));
            }
            else
            {
                reader.Skip(wireType);
            }
        }

        if (pieces.Count == 0)
        {
            throw new TokenizerLoadException("not a SentencePiece model: it contains no pieces.", path);
        }

        return pieces;
    }

    private static (string, int) ReadPiece(ReadOnlyMemory<byte> message, string path, int index)
    {
        var reader = new ProtoReader(message, path);
        string? piece = null;
        int type = 1;
        while (!reader.AtEnd)
        {
            var (field, wireType) = reader.ReadTag();
            if (field == 1 && wireType == ProtoReader.LengthDelimited)
            {
                try
                {
                    piece = StrictUtf8.GetString(reader.ReadBytes().Span);
                }
                catch (DecoderFallbackException ex)
                {
                    throw new TokenizerLoadException($"piece {index} is not valid UTF-8.", path, innerException: ex);
                }
            }
            else if (field == 3 && wireType == ProtoReader.Varint)
            {
                type = (int)reader.ReadVarint();
            }
            else
            {
                reader.Skip(wireType);
            }
        }

        return (piece ?? throw new TokenizerLoadException($"piece {index} has no text.", path), type);
    }

    /// <summary>Just enough of the protobuf wire format to walk a ModelProto and reject truncated files.</summary>
    private sealed class ProtoReader(ReadOnlyMemory<byte> data, string path)
    {
        public const int Varint = 0;
        public const int LengthDelimited = 2;
        private int _pos;

        public bool AtEnd => _pos >= data.Length;

        public (int Field, int WireType) ReadTag()
        {
            ulong tag = ReadVarint();
            int field = (int)(tag >> 3);
            if (field == 0 || tag >> 3 > int.MaxValue)
            {
                throw Corrupt($"invalid field tag at byte {_pos}");
            }

            return (field, (int)(tag & 7));
        }

        public ulong ReadVarint()
        {
            ReadOnlySpan<byte> span = data.Span;
            ulong value = 0;
            for (int shift = 0; shift < 64; shift += 7)
            {
                if (_pos >= span.Length)
                {
                    throw Corrupt("truncated varint");
                }

                byte b = span[_pos++];
                value |= (ulong)(b & 0x7F) << shift;
                if (b < 0x80)
                {
                    return value;
                }
            }

            throw Corrupt("varint longer than 10 bytes");
        }

        public ReadOnlyMemory<byte> ReadBytes()
        {
            ulong length = ReadVarint();
            if (length > (ulong)(data.Length - _pos))
            {
                throw Corrupt($"length {length} runs past the end of the data");
            }

            ReadOnlyMemory<byte> slice = data.Slice(_pos, (int)length);
            _pos += (int)length;
            return slice;
        }

        public void Skip(int wireType)
        {
            switch (wireType)
            {
                case Varint:
                    ReadVarint();
                    break;
                case 1:
                    Advance(8);
                    break;
                case LengthDelimited:
                    ReadBytes();
                    break;
                case 5:
                    Advance(4);
                    break;
                default:
                    throw Corrupt($"unsupported wire type {wireType}");
            }
        }

        private void Advance(int count)
        {
            if (data.Length - _pos < count)
            {
                throw Corrupt("truncated fixed-width field");
            }

            _pos += count;
        }

        private TokenizerLoadException Corrupt(string detail) =>
            new($"not a valid SentencePiece model ({detail}).", path);
    }
}
