using System.Diagnostics.CodeAnalysis;

namespace LocalMxfp4.ChatClient.Templates;

/// <summary>
/// The token ids an assistant reply was generated as, looked up by its text. A template that re-emits an earlier reply
/// from these ids (instead of re-encoding its text, which may tokenize differently) renders the next turn's prompt with
/// exactly the tokens already in the KV cache, so the prefix cache can reuse the whole conversation.
/// </summary>
public interface IReplyTokenLookup
{
    /// <summary>The ids that decode to exactly <paramref name="text"/>, without the end-of-turn token, when this text was generated here.</summary>
    bool TryGet(string text, [NotNullWhen(true)] out IReadOnlyList<int>? tokenIds);
}
