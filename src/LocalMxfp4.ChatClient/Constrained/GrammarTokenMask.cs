using System.Numerics;
using LocalMxfp4.ChatClient.Generation;
using LocalMxfp4.Serving;

namespace LocalMxfp4.ChatClient.Constrained;

/// <summary>
/// The token mask of constrained decoding: before each token it computes which vocabulary entries keep the reply a
/// prefix of a valid <see cref="JsonGrammar"/> reply — by walking the tokenizer's byte trie with a
/// <see cref="JsonRecognizer"/> — and sets every other logit to −∞. End-of-sequence ids are allowed exactly when the
/// reply is complete.
/// </summary>
/// <remarks>
/// <para>Budget: a token is also refused if, after it, the reply could no longer be completed (plus its end-of-sequence
/// token) in the tokens MaxOutputTokens leaves, counting one token per byte (every byte has a single-byte token). So a
/// weak model that would write a string forever is steered to close it in time. When the grammar's shortest reply fits
/// in MaxOutputTokens (<see cref="BudgetGuaranteed"/>) the reply is always complete; when it does not, the tokens that
/// bring the reply closest to complete are allowed, which often still finishes since most tokens are several bytes.</para>
/// <para>Speed: inside a plain string — where most decoding time goes — the ~95% of tokens that are plain text are
/// allowed from a precomputed bit set, and only the rest (quotes, escapes, partial UTF-8) are walked.</para>
/// </remarks>
internal sealed class GrammarTokenMask : ILogitsProcessor
{
    private readonly JsonRecognizer _recognizer;
    private readonly VocabularyIndex _vocabulary;
    private readonly int[] _stopIds;
    private readonly ulong[] _allowed;
    private readonly int _maxTokens;
    private int _accepted;
    private bool _any;
    private int _closest;

    public GrammarTokenMask(JsonGrammar grammar, VocabularyIndex vocabulary, IEnumerable<int> stopIds, int maxTokens, int logitCount)
    {
        _recognizer = new JsonRecognizer(grammar);
        _vocabulary = vocabulary;
        _stopIds = [.. stopIds];
        _maxTokens = maxTokens;
        _allowed = new ulong[(Math.Max(logitCount, vocabulary.Size) + 63) / 64];
        BudgetGuaranteed = grammar.MinLength + 1 <= maxTokens;
    }

    /// <summary>Whether every reply is complete within MaxOutputTokens (false when the shortest reply has more bytes than that).</summary>
    public bool BudgetGuaranteed { get; }

    /// <summary>Whether the text accepted so far is a complete reply.</summary>
    public bool IsComplete => _recognizer.IsComplete;

    /// <inheritdoc />
    public void Apply(Span<float> logits)
    {
        ComputeAllowed();
        for (int w = 0; w < _allowed.Length; w++)
        {
            ulong bits = _allowed[w];
            int start = w * 64;
            if (bits == ulong.MaxValue || start >= logits.Length)
            {
                continue;
            }

            int end = Math.Min(start + 64, logits.Length);
            if (bits == 0)
            {
                logits[start..end].Fill(float.NegativeInfinity);
                continue;
            }

            for (int i = start; i < end; i++)
            {
                if ((bits & (1UL << (i - start))) == 0)
                {
                    logits[i] = float.NegativeInfinity;
                }
            }
        }
    }

    /// <inheritdoc />
    public bool IsAllowed(int tokenId) => (uint)tokenId < (uint)(_allowed.Length * 64) && (_allowed[tokenId >> 6] & (1UL << (tokenId & 63))) != 0;

    /// <inheritdoc />
    /// <exception cref="InvalidOperationException">The token does not continue the reply (it was not allowed by the last mask).</exception>
    public void Accept(int tokenId)
    {
        _accepted++;
        if (Array.IndexOf(_stopIds, tokenId) >= 0)
        {
            return;
        }

        byte[] bytes = _vocabulary.BytesOf(tokenId)
            ?? throw new InvalidOperationException($"Token {tokenId} is a special token or outside the vocabulary; constrained decoding cannot continue with it.");
        JsonRecognizer.Checkpoint start = _recognizer.Save();
        foreach (byte b in bytes)
        {
            if (!_recognizer.Advance(b))
            {
                _recognizer.Restore(start);
                throw new InvalidOperationException($"Token {tokenId} does not continue the constrained reply; only tokens the mask allowed may be accepted.");
            }
        }

        _recognizer.Commit();
    }

    /// <summary>Computes the allowed set for the next token.</summary>
    private void ComputeAllowed()
    {
        // After this token, tokens left = remaining − 1, and the completion plus the end-of-sequence token must fit.
        int limit = _maxTokens - _accepted - 2;
        Fill(limit);
        if (!_any && _closest < int.MaxValue)
        {
            // Nothing fits the budget (only when it was too small from the start): take the biggest step towards the end.
            Fill(_closest);
        }

        if (!_any)
        {
            // No token continues the text (only possible if the vocabulary lacks a needed byte): end the reply.
            foreach (int id in _stopIds)
            {
                Set(id);
            }
        }
    }

    private void Fill(int limit)
    {
        Array.Clear(_allowed);
        _any = false;
        _closest = int.MaxValue;
        if (_recognizer.IsComplete)
        {
            foreach (int id in _stopIds)
            {
                Set(id);
            }

            _any = _stopIds.Length > 0;
        }

        if (_recognizer.InPlainStringBody(out int charactersLeft, out int charactersMissing))
        {
            AllowStringText(limit, charactersLeft, charactersMissing);
            Walk(_vocabulary.NonStringBody, 0, limit);
        }
        else
        {
            Walk(_vocabulary.All, 0, limit);
        }
    }

    // Inside a plain string a text token only lengthens the string, so whether it fits is a matter of its character
    // count: maxLength must leave room for it, and with the budget tight it must shorten what minLength still needs
    // enough. No trie walk is needed for these ~95% of the vocabulary.
    private void AllowStringText(int limit, int charactersLeft, int charactersMissing)
    {
        ulong[] body = _vocabulary.StringBody;
        int distance = _recognizer.Distance;
        if (charactersLeft >= _vocabulary.MaxStringBodyCharacters && distance <= limit)
        {
            for (int w = 0; w < body.Length; w++)
            {
                _allowed[w] |= body[w];
            }

            _any |= _vocabulary.StringBodyCount > 0;
            return;
        }

        ushort[] characters = _vocabulary.StringBodyCharacters;
        for (int w = 0; w < body.Length; w++)
        {
            ulong bits = body[w];
            while (bits != 0)
            {
                int id = (w << 6) + BitOperations.TrailingZeroCount(bits);
                bits &= bits - 1;
                int c = characters[id];
                if (c > charactersLeft)
                {
                    continue;
                }

                int after = distance - Math.Min(c, charactersMissing);
                _closest = Math.Min(_closest, after);
                if (after <= limit)
                {
                    _allowed[w] |= 1UL << (id & 63);
                    _any = true;
                }
            }
        }
    }

    private void Walk(TokenTrie trie, int node, int limit)
    {
        int end = trie.EdgeStart[node + 1];
        for (int e = trie.EdgeStart[node]; e < end; e++)
        {
            JsonRecognizer.Checkpoint checkpoint = _recognizer.Save();
            if (_recognizer.Advance(trie.EdgeByte[e]))
            {
                int child = trie.EdgeChild[e];
                int first = trie.TokenStart[child], last = trie.TokenStart[child + 1];
                if (first < last)
                {
                    int after = _recognizer.Distance;
                    _closest = Math.Min(_closest, after);
                    if (after <= limit)
                    {
                        for (int t = first; t < last; t++)
                        {
                            Set(trie.TokenIds[t]);
                        }

                        _any = true;
                    }
                }

                if (trie.EdgeStart[child] < trie.EdgeStart[child + 1])
                {
                    Walk(trie, child, limit);
                }
            }

            _recognizer.Restore(checkpoint);
        }
    }

    private void Set(int id)
    {
        if ((uint)id < (uint)(_allowed.Length * 64))
        {
            _allowed[id >> 6] |= 1UL << (id & 63);
        }
    }
}
