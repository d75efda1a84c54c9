using System.Diagnostics.CodeAnalysis;

namespace LocalMxfp4.ChatClient.Templates;

/// <summary>
/// The most recent replies a client generated, text → token ids (bounded, least recently used evicted). Only replies
/// whose ids decode to exactly the text the caller received are kept, so using them never changes the prompt's text.
/// </summary>
internal sealed class ReplyTokenCache(int capacity = 1024) : IReplyTokenLookup
{
    private readonly Dictionary<string, LinkedListNode<(string Text, int[] Ids)>> _byText = new(StringComparer.Ordinal);
    private readonly LinkedList<(string Text, int[] Ids)> _order = new();

    public int Count
    {
        get
        {
            lock (_order)
            {
                return _order.Count;
            }
        }
    }

    public void Add(string text, IReadOnlyList<int> ids)
    {
        if (text.Length == 0 || ids.Count == 0)
        {
            return;
        }

        lock (_order)
        {
            if (_byText.Remove(text, out LinkedListNode<(string, int[])>? old))
            {
                _order.Remove(old);
            }

            _byText[text] = _order.AddLast((text, [.. ids]));
            if (_order.Count > capacity)
            {
                _byText.Remove(_order.First!.Value.Text);
                _order.RemoveFirst();
            }
        }
    }

    public bool TryGet(string text, [NotNullWhen(true)] out IReadOnlyList<int>? tokenIds)
    {
        lock (_order)
        {
            if (_byText.TryGetValue(text, out LinkedListNode<(string Text, int[] Ids)>? node))
            {
                _order.Remove(node);
                _order.AddLast(node);
                tokenIds = node.Value.Ids;
                return true;
            }
        }

        tokenIds = null;
        return false;
    }
}
