using System.Buffers;
using System.Text;
using Microsoft.ML.Tokenizers;

namespace LocalMxfp4.Tokenization;

/// <summary>
/// Adds Hugging Face's <c>ignore_merges</c> rule to Microsoft.ML.Tokenizers' <see cref="BpeTokenizer"/>, which lacks it:
/// a pre-token that is itself a vocabulary entry becomes that single id before any merge is tried. LLaMA-3's
/// tokenizer.json sets the flag (its vocabulary came from tiktoken, which always works this way); without it
/// "Cửa Việt" encodes " Việt" as three merged pieces instead of the reference's single id 101798.
/// </summary>
internal sealed class WholeWordFirstEncoder
{
    private readonly Tokenizer _bpe;
    private readonly PreTokenizer _preTokenizer;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _vocab;
    private readonly int _maxTokenLength;

    public WholeWordFirstEncoder(Tokenizer bpe, PreTokenizer preTokenizer, IEnumerable<KeyValuePair<string, int>> vocab)
    {
        _bpe = bpe;
        _preTokenizer = preTokenizer;
        var dictionary = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var (token, id) in vocab)
        {
            dictionary[token] = id;
            _maxTokenLength = Math.Max(_maxTokenLength, token.Length);
        }

        _vocab = dictionary.GetAlternateLookup<ReadOnlySpan<char>>();
    }

    public IReadOnlyList<int> Encode(string text)
    {
        var ids = new List<int>(text.Length / 3 + 4);
        char[] buffer = ArrayPool<char>.Shared.Rent(_maxTokenLength);
        try
        {
            foreach (var (offset, length) in _preTokenizer.PreTokenize(text))
            {
                ReadOnlySpan<char> piece = text.AsSpan(offset, length);
                if (TryWholeWord(piece, buffer, out int id))
                {
                    ids.Add(id);
                }
                else
                {
                    ids.AddRange(_bpe.EncodeToIds(piece, considerPreTokenization: false, considerNormalization: false));
                }
            }
        }
        finally
        {
            ArrayPool<char>.Shared.Return(buffer);
        }

        return ids;
    }

    private bool TryWholeWord(ReadOnlySpan<char> piece, char[] buffer, out int id)
    {
        id = 0;
        // Each UTF-16 unit is at least one byte-level character, so longer pieces cannot be a single token.
        if (piece.Length > _maxTokenLength)
        {
            return false;
        }

        int byteCount = Encoding.UTF8.GetByteCount(piece);
        if (byteCount > _maxTokenLength)
        {
            return false;
        }

        Span<byte> bytes = byteCount <= 512 ? stackalloc byte[byteCount] : new byte[byteCount];
        Encoding.UTF8.GetBytes(piece, bytes);
        for (int i = 0; i < bytes.Length; i++)
        {
            buffer[i] = ByteLevelMapping.ToChar(bytes[i]);
        }

        return _vocab.TryGetValue(buffer.AsSpan(0, byteCount), out id);
    }
}
