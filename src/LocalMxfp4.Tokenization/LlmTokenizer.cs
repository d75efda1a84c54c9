using System.Buffers;
using System.Collections.ObjectModel;
using System.Text;
using Microsoft.ML.Tokenizers;

namespace LocalMxfp4.Tokenization;

/// <summary>
/// A LLaMA-family tokenizer: plain-text encoding through Microsoft.ML.Tokenizers, and byte-exact decoding
/// (whole or streaming) through an id → UTF-8 bytes table, so streamed text always equals <see cref="Decode"/>.
/// </summary>
/// <remarks>
/// <see cref="Encode"/> never turns special-token strings found in the text into control ids: a user who types
/// <c>&lt;|eot_id|&gt;</c> gets ordinary text pieces. Prompt builders must insert special ids themselves.
/// Loading is the expensive part (up to about a second for tokenizer.json), so load once and share the instance;
/// per-stream decoding state lives only in <see cref="StreamingDetokenizer"/>, one per generated sequence.
/// </remarks>
public sealed class LlmTokenizer
{
    /// <summary>The LLaMA-3 pre-tokenizer regular expression (used for tiktoken files unless another is given).</summary>
    public const string Llama3PreTokenizerPattern = Llama3Defaults.Pattern;

    private readonly TokenTable _table;
    private readonly SpecialTokenSet _specials;
    private readonly HashSet<int> _endIds;
    private readonly WholeWordFirstEncoder? _wholeWordFirst;

    internal LlmTokenizer(
        TokenizerKind kind,
        string sourcePath,
        Tokenizer inner,
        TokenTable table,
        SpecialTokenSet specials,
        TokenizerConfig? config,
        int? defaultBos,
        IEnumerable<int> defaultEos,
        bool stripLeadingSpace,
        WholeWordFirstEncoder? wholeWordFirst = null)
    {
        _wholeWordFirst = wholeWordFirst;
        Kind = kind;
        SourcePath = sourcePath;
        InnerTokenizer = inner;
        _table = table;
        _specials = specials;
        StripsLeadingSpaceOnDecode = stripLeadingSpace;
        SpecialTokens = new ReadOnlyDictionary<string, int>(specials.ByName);

        BeginOfSequenceId = (config?.BosToken is { } bos ? TryGetSpecialTokenId(bos) : null)
            ?? TryGetSpecialTokenId(Llama3Defaults.BeginOfText)
            ?? defaultBos;

        var ends = new SortedSet<int>(defaultEos.Where(IsSpecial));
        if (config?.EosToken is { } eos && TryGetSpecialTokenId(eos) is int eosId)
        {
            ends.Add(eosId);
        }

        foreach (string name in KnownEndNames)
        {
            if (TryGetSpecialTokenId(name) is int id)
            {
                ends.Add(id);
            }
        }

        EndOfSequenceIds = ends.ToArray();
        _endIds = [.. ends];
    }

    // Tokens that end a turn or a document in the LLaMA families; a model emitting any of them is done.
    private static readonly string[] KnownEndNames = ["<|end_of_text|>", "<|eot_id|>", "<|eom_id|>", "</s>"];

    /// <summary>Which file format this tokenizer came from.</summary>
    public TokenizerKind Kind { get; }

    /// <summary>The tokenizer file that was loaded.</summary>
    public string SourcePath { get; }

    /// <summary>The number of token ids, special tokens included (128256 for LLaMA-3).</summary>
    public int VocabularySize => _table.Count;

    /// <summary>The id a prompt starts with (<c>&lt;|begin_of_text|&gt;</c>, <c>&lt;s&gt;</c>), if the tokenizer has one.</summary>
    public int? BeginOfSequenceId { get; }

    /// <summary>
    /// The ids that end generation, ascending: for LLaMA-3 <c>&lt;|end_of_text|&gt;</c>, <c>&lt;|eom_id|&gt;</c> and
    /// <c>&lt;|eot_id|&gt;</c>; for SentencePiece <c>&lt;/s&gt;</c>; plus the configured <c>eos_token</c>.
    /// </summary>
    public IReadOnlyList<int> EndOfSequenceIds { get; }

    /// <summary>Special-token name → id; one entry per special id (256 for LLaMA-3).</summary>
    public IReadOnlyDictionary<string, int> SpecialTokens { get; }

    /// <summary>
    /// True when decoding drops the space that SentencePiece's dummy prefix put before the first word
    /// (LLaMA-2 style output). Off unless requested at load time.
    /// </summary>
    public bool StripsLeadingSpaceOnDecode { get; }

    /// <summary>
    /// The underlying Microsoft.ML.Tokenizers instance. Its pre-tokenizer does not match special tokens, so its
    /// encoders are as injection-safe as <see cref="Encode"/>; its Decode renders special tokens by name.
    /// </summary>
    /// <remarks>
    /// For a tokenizer.json with <c>ignore_merges</c> (LLaMA-3) its <see cref="BpeTokenizer"/> lacks that rule and
    /// can split a few whole-vocabulary words differently; <see cref="Encode"/> applies the rule and is exact.
    /// </remarks>
    public Tokenizer InnerTokenizer { get; }

    /// <summary>Whether <paramref name="id"/> is a special (control or added) token.</summary>
    public bool IsSpecial(int id) => (uint)id < (uint)_table.Count && _table.Kind(id) == TokenKind.Special;

    /// <summary>Whether <paramref name="id"/> is one of <see cref="EndOfSequenceIds"/>.</summary>
    public bool IsEndOfSequence(int id) => _endIds.Contains(id);

    /// <summary>
    /// Looks up a special token by name, also accepting names the files used for ids that were renamed
    /// (LLaMA-3.0 <c>&lt;|reserved_special_token_4|&gt;</c> resolves to the id of <c>&lt;|eom_id|&gt;</c>).
    /// </summary>
    /// <returns>The id, or null when no special token has that name.</returns>
    public int? TryGetSpecialTokenId(string token)
    {
        ArgumentNullException.ThrowIfNull(token);
        return _specials.ByName.TryGetValue(token, out int id) || _specials.Aliases.TryGetValue(token, out id) ? id : null;
    }

    /// <summary>The canonical name of special token <paramref name="id"/>, or null if it is not special.</summary>
    public string? GetSpecialTokenName(int id) => _specials.ById.TryGetValue(id, out string? name) ? name : null;

    /// <summary>
    /// Encodes plain text: no BOS is added and special-token strings are treated as ordinary text.
    /// </summary>
    public IReadOnlyList<int> Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return _wholeWordFirst?.Encode(text) ?? InnerTokenizer.EncodeToIds(text);
    }

    /// <summary>The number of ids <see cref="Encode"/> would return for <paramref name="text"/>.</summary>
    public int CountTokens(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return _wholeWordFirst?.Encode(text).Count ?? InnerTokenizer.CountTokens(text);
    }

    /// <summary>
    /// The raw bytes of token <paramref name="id"/>: the UTF-8 fragment it stands for (possibly an incomplete
    /// character), one byte for a byte-fallback piece, or the UTF-8 of the name for a special token
    /// (check <see cref="IsSpecial"/>). SentencePiece's '▁' is returned as a space.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="id"/> is outside [0, <see cref="VocabularySize"/>).</exception>
    public ReadOnlySpan<byte> GetTokenBytes(int id)
    {
        CheckId(id);
        return _table.Bytes(id);
    }

    /// <summary>
    /// Decodes ids to text. With <paramref name="skipSpecialTokens"/> special tokens contribute nothing, otherwise
    /// their names. Invalid or incomplete UTF-8 becomes U+FFFD, exactly as a <see cref="StreamingDetokenizer"/> would
    /// produce after <see cref="StreamingDetokenizer.Flush"/>.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">An id is outside [0, <see cref="VocabularySize"/>).</exception>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var buffer = new ArrayBufferWriter<byte>(256);
        bool stripPending = StripsLeadingSpaceOnDecode;
        foreach (int id in ids)
        {
            buffer.Write(GetEmittedBytes(id, skipSpecialTokens, ref stripPending));
        }

        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    /// <summary>Creates a detokenizer that turns ids into text one at a time without splitting characters.</summary>
    public StreamingDetokenizer CreateStreamingDetokenizer(bool skipSpecialTokens = true) => new(this, skipSpecialTokens);

    /// <summary>
    /// Loads the tokenizer of a model directory: <c>tokenizer.model</c> (tiktoken text or SentencePiece protobuf),
    /// else <c>tokenizer.json</c> (byte-level BPE), else Meta's <c>original/tokenizer.model</c>.
    /// <c>tokenizer_config.json</c> beside the file (or in the parent of <c>original/</c>) supplies special-token names.
    /// </summary>
    /// <exception cref="TokenizerLoadException">No usable tokenizer file was found, or it is corrupt.</exception>
    public static LlmTokenizer Load(string modelDirectory)
    {
        ArgumentNullException.ThrowIfNull(modelDirectory);
        if (!Directory.Exists(modelDirectory))
        {
            throw new TokenizerLoadException("model directory not found.", modelDirectory);
        }

        string model = Path.Combine(modelDirectory, "tokenizer.model");
        string json = Path.Combine(modelDirectory, "tokenizer.json");
        if (File.Exists(model))
        {
            switch (TokenizerFormatSniffer.Sniff(model))
            {
                case TokenizerKind.Tiktoken:
                    return LoadTiktoken(model);
                case TokenizerKind.SentencePiece:
                    return LoadSentencePiece(model);
                default:
                    if (!File.Exists(json))
                    {
                        throw new TokenizerLoadException(
                            "neither a tiktoken vocabulary ('<base64> <rank>' lines) nor a SentencePiece model, and no tokenizer.json beside it.",
                            model);
                    }

                    break;
            }
        }

        if (File.Exists(json))
        {
            return LoadHuggingFaceJson(json);
        }

        string original = Path.Combine(modelDirectory, "original", "tokenizer.model");
        if (File.Exists(original))
        {
            return TokenizerFormatSniffer.Sniff(original) switch
            {
                TokenizerKind.Tiktoken => LoadTiktoken(original),
                TokenizerKind.SentencePiece => LoadSentencePiece(original),
                _ => throw new TokenizerLoadException(
                    "neither a tiktoken vocabulary ('<base64> <rank>' lines) nor a SentencePiece model.", original),
            };
        }

        throw new TokenizerLoadException(
            "no tokenizer found (looked for tokenizer.model, tokenizer.json and original/tokenizer.model).", modelDirectory);
    }

    /// <summary>
    /// Loads a tiktoken-format vocabulary ("base64(bytes) rank" per line), as Meta ships for LLaMA-3.
    /// </summary>
    /// <param name="path">The vocabulary file.</param>
    /// <param name="specialTokens">
    /// Special tokens (name → id). When null, LLaMA-3's 256 specials are placed right after the last rank, named from a
    /// <c>tokenizer_config.json</c> beside the file (or in the parent of an <c>original/</c> folder) when there is one.
    /// </param>
    /// <param name="preTokenizerPattern">The split regex; LLaMA-3's <see cref="Llama3PreTokenizerPattern"/> when null.</param>
    /// <exception cref="TokenizerLoadException">The file is missing or has a malformed line (the line number is reported).</exception>
    public static LlmTokenizer LoadTiktoken(string path, IReadOnlyDictionary<string, int>? specialTokens = null, string? preTokenizerPattern = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        return TiktokenLoader.Load(path, specialTokens, preTokenizerPattern);
    }

    /// <summary>Loads a Hugging Face <c>tokenizer.json</c> with a byte-level BPE model (LLaMA-3 and GPT-2 style).</summary>
    /// <exception cref="TokenizerLoadException">The file is missing, malformed, or not a byte-level BPE tokenizer.</exception>
    public static LlmTokenizer LoadHuggingFaceJson(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        return HuggingFaceJsonLoader.Load(path);
    }

    /// <summary>Loads a SentencePiece model (LLaMA-1/2, llama2.c), encoding with its dummy-prefix space and byte fallback.</summary>
    /// <param name="path">The <c>tokenizer.model</c> protobuf.</param>
    /// <param name="stripLeadingSpaceOnDecode">
    /// Drop the leading space of the first decoded word, as SentencePiece's own decoder does. Off by default so that
    /// decoded pieces concatenate exactly (" Once upon a time").
    /// </param>
    /// <exception cref="TokenizerLoadException">The file is missing or not a valid SentencePiece model.</exception>
    public static LlmTokenizer LoadSentencePiece(string path, bool stripLeadingSpaceOnDecode = false)
    {
        ArgumentNullException.ThrowIfNull(path);
        return SentencePieceLoader.Load(path, stripLeadingSpaceOnDecode);
    }

    /// <summary>The bytes a token contributes to decoded output, shared by whole and streaming decoding.</summary>
    internal ReadOnlySpan<byte> GetEmittedBytes(int id, bool skipSpecialTokens, ref bool stripPending)
    {
        CheckId(id);
        TokenKind kind = _table.Kind(id);
        if (kind == TokenKind.Special)
        {
            return skipSpecialTokens ? [] : _table.Bytes(id);
        }

        ReadOnlySpan<byte> bytes = _table.Bytes(id);
        if (stripPending)
        {
            stripPending = false;
            if (kind == TokenKind.Normal && bytes.Length > 0 && bytes[0] == (byte)' ')
            {
                bytes = bytes[1..];
            }
        }

        return bytes;
    }

    private void CheckId(int id)
    {
        if ((uint)id >= (uint)_table.Count)
        {
            throw new ArgumentOutOfRangeException(nameof(id), id, $"Token id must be in [0, {_table.Count}).");
        }
    }
}
