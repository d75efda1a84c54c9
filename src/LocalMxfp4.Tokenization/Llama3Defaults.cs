using System.Text.RegularExpressions;

namespace LocalMxfp4.Tokenization;

/// <summary>LLaMA-3 constants that the tiktoken file itself does not carry.</summary>
internal static partial class Llama3Defaults
{
    /// <summary>The pre-tokenizer split pattern of LLaMA-3 (identical in Meta's tokenizer.py and the HF tokenizer.json).</summary>
    public const string Pattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>The GPT-2 pattern that HF's ByteLevel pre-tokenizer applies when <c>use_regex</c> is true.</summary>
    public const string Gpt2Pattern =
        @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    /// <summary>LLaMA-3 reserves this many ids after the ordinary vocabulary for special tokens.</summary>
    public const int SpecialTokenCount = 256;

    public const string BeginOfText = "<|begin_of_text|>";

    /// <summary>
    /// Names that LLaMA-3.1 gave to three ids that LLaMA-3.0 files (and some 3.1 repackagings) still call
    /// <c>&lt;|reserved_special_token_N|&gt;</c>. Offsets are relative to the first special id.
    /// </summary>
    public static readonly (int Offset, string Name)[] Llama31Renames =
    [
        (4, "<|finetune_right_pad_id|>"),
        (8, "<|eom_id|>"),
        (10, "<|python_tag|>"),
    ];

    // Compiling the pattern at build time avoids ~50 ms of Regex compilation on every load.
    [GeneratedRegex(Pattern)]
    private static partial Regex Llama3Regex();

    [GeneratedRegex(Gpt2Pattern)]
    private static partial Regex Gpt2Regex();

    /// <summary>Returns a regex for <paramref name="pattern"/>, reusing the source-generated ones for the known patterns.</summary>
    public static Regex RegexFor(string pattern) => pattern switch
    {
        Pattern => Llama3Regex(),
        Gpt2Pattern => Gpt2Regex(),
        _ => new Regex(pattern, RegexOptions.Compiled),
    };

    /// <summary>The LLaMA-3.1 names of the 256 special tokens, in id order starting at the first special id.</summary>
    public static string[] SpecialNames()
    {
        var names = new string[SpecialTokenCount];
        names[0] = BeginOfText;
        names[1] = "<|end_of_text|>";
        names[2] = "<|reserved_special_token_0|>";
        names[3] = "<|reserved_special_token_1|>";
        names[4] = "<|finetune_right_pad_id|>";
        names[5] = "<|reserved_special_token_2|>";
        names[6] = "<|start_header_id|>";
        names[7] = "<|end_header_id|>";
        names[8] = "<|eom_id|>";
        names[9] = "<|eot_id|>";
        names[10] = "<|python_tag|>";
        for (int i = 11; i < SpecialTokenCount; i++)
        {
            names[i] = $"<|reserved_special_token_{i - 8}|>";
        }

        return names;
    }

    [GeneratedRegex(@"^<\|reserved_special_token_\d+\|>$")]
    public static partial Regex ReservedName();
}
