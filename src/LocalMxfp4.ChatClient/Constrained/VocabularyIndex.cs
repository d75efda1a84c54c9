using System.Runtime.CompilerServices;
using System.Text.Unicode;
using LocalMxfp4.Tokenization;

namespace LocalMxfp4.ChatClient.Constrained;

/// <summary>
/// Everything about a tokenizer's vocabulary that constrained decoding needs and that does not depend on the request:
/// each token's bytes, a trie of all tokens, and the split between "plain string text" tokens and the rest. Built once
/// per tokenizer (about a tenth of a second for LLaMA-3's 128k tokens) and shared by every request.
/// </summary>
internal sealed class VocabularyIndex
{
    private static readonly ConditionalWeakTable<LlmTokenizer, VocabularyIndex> Cache = [];

    private readonly byte[]?[] _bytes;

    private VocabularyIndex(LlmTokenizer tokenizer)
    {
        Size = tokenizer.VocabularySize;
        _bytes = new byte[Size][];
        StringBody = new ulong[(Size + 63) / 64];
        StringBodyCharacters = new ushort[Size];
        var all = new List<int>(Size);
        var rest = new List<int>(Size / 8);
        for (int id = 0; id < Size; id++)
        {
            ReadOnlySpan<byte> bytes = tokenizer.GetTokenBytes(id);

            // Special tokens (and empty pieces) never take part in constrained text; end-of-sequence ids are
            // allowed separately, exactly when the reply is complete.
            if (tokenizer.IsSpecial(id) || bytes.IsEmpty)
            {
                continue;
            }

            _bytes[id] = bytes.ToArray();
            all.Add(id);
            if (IsPlainStringText(bytes))
            {
                StringBody[id >> 6] |= 1UL << (id & 63);
                int characters = Utf8Characters(bytes);
                StringBodyCharacters[id] = (ushort)Math.Min(characters, ushort.MaxValue);
                MaxStringBodyCharacters = Math.Max(MaxStringBodyCharacters, characters);
            }
            else
            {
                rest.Add(id);
            }
        }

        All = TokenTrie.Build(all, id => _bytes[id]!);
        NonStringBody = TokenTrie.Build(rest, id => _bytes[id]!);
        StringBodyCount = all.Count - rest.Count;
    }

    /// <summary>Token ids the index covers (the tokenizer's vocabulary).</summary>
    public int Size { get; }

    /// <summary>Every ordinary (non-special, non-empty) token.</summary>
    public TokenTrie All { get; }

    /// <summary>The ordinary tokens not in <see cref="StringBody"/>: quotes, backslashes, control bytes, partial UTF-8.</summary>
    public TokenTrie NonStringBody { get; }

    /// <summary>
    /// Bit set of tokens made only of characters that may appear unescaped inside a JSON string (complete UTF-8, no
    /// '"', '\' or control character): inside a plain string every one of them is allowed, without a trie walk.
    /// </summary>
    public ulong[] StringBody { get; }

    public int StringBodyCount { get; }

    /// <summary>Characters each <see cref="StringBody"/> token adds to a string (0 for other tokens).</summary>
    public ushort[] StringBodyCharacters { get; }

    /// <summary>The most characters one <see cref="StringBody"/> token adds to a string.</summary>
    public int MaxStringBodyCharacters { get; }

    /// <summary>The shared index of <paramref name="tokenizer"/>, built on first use.</summary>
    public static VocabularyIndex For(LlmTokenizer tokenizer) => Cache.GetValue(tokenizer, static t => new VocabularyIndex(t));

    /// <summary>The bytes of an ordinary token; null for special tokens and ids outside the vocabulary.</summary>
    public byte[]? BytesOf(int id) => (uint)id < (uint)Size ? _bytes[id] : null;

    private static bool IsPlainStringText(ReadOnlySpan<byte> bytes)
    {
        foreach (byte b in bytes)
        {
            if (b < 0x20 || b == '"' || b == '\\')
            {
                return false;
            }
        }

        return Utf8.IsValid(bytes);
    }

    private static int Utf8Characters(ReadOnlySpan<byte> bytes)
    {
        int count = 0;
        foreach (byte b in bytes)
        {
            if ((b & 0xC0) != 0x80)
            {
                count++;
            }
        }

        return count;
    }
}
