namespace LocalMxfp4.Tokenization;

/// <summary>The on-disk tokenizer format an <see cref="LlmTokenizer"/> was loaded from.</summary>
public enum TokenizerKind
{
    /// <summary>Meta's tiktoken-format <c>tokenizer.model</c> ("base64 rank" lines), as shipped for LLaMA-3.</summary>
    Tiktoken,

    /// <summary>A Hugging Face <c>tokenizer.json</c> with a byte-level BPE model.</summary>
    HuggingFaceBpe,

    /// <summary>A SentencePiece <c>tokenizer.model</c> protobuf (LLaMA-1/2, llama2.c models), with byte fallback.</summary>
    SentencePiece,
}
