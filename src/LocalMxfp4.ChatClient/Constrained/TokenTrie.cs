namespace LocalMxfp4.ChatClient.Constrained;

/// <summary>
/// A byte trie over token byte strings, flattened into arrays (children of a node are contiguous and sorted): walking
/// it with a recognizer tests every token that shares a prefix only once for that prefix, and a rejected byte prunes
/// every token below it.
/// </summary>
internal sealed class TokenTrie
{
    private TokenTrie(int[] edgeStart, byte[] edgeByte, int[] edgeChild, int[] tokenStart, int[] tokenIds, int tokens)
    {
        EdgeStart = edgeStart;
        EdgeByte = edgeByte;
        EdgeChild = edgeChild;
        TokenStart = tokenStart;
        TokenIds = tokenIds;
        TokenCount = tokens;
    }

    /// <summary>Edges of node i are [EdgeStart[i], EdgeStart[i + 1]).</summary>
    public int[] EdgeStart { get; }

    public byte[] EdgeByte { get; }

    public int[] EdgeChild { get; }

    /// <summary>Tokens whose bytes end at node i are TokenIds[TokenStart[i] .. TokenStart[i + 1]).</summary>
    public int[] TokenStart { get; }

    public int[] TokenIds { get; }

    public int NodeCount => TokenStart.Length - 1;

    public int TokenCount { get; }

    /// <summary>Builds the trie of <paramref name="ids"/>, whose bytes <paramref name="bytesOf"/> gives (never empty).</summary>
    public static TokenTrie Build(IReadOnlyList<int> ids, Func<int, byte[]> bytesOf)
    {
        // Inserting in lexicographic order creates nodes in depth-first order with every node's children in byte
        // order, so the flat edge arrays come out sorted without a second pass.
        int[] sorted = [.. ids];
        byte[][] bytes = new byte[sorted.Length][];
        for (int i = 0; i < sorted.Length; i++)
        {
            bytes[i] = bytesOf(sorted[i]);
        }

        Array.Sort(bytes, sorted, Comparer<byte[]>.Create((a, b) => a.AsSpan().SequenceCompareTo(b)));
        var parent = new List<int> { -1 };
        var label = new List<byte> { 0 };
        var tokenNode = new int[sorted.Length];
        var path = new List<int> { 0 };
        byte[] previous = [];
        for (int t = 0; t < sorted.Length; t++)
        {
            byte[] current = bytes[t];
            int common = current.AsSpan().CommonPrefixLength(previous);
            path.RemoveRange(common + 1, path.Count - common - 1);
            for (int d = common; d < current.Length; d++)
            {
                parent.Add(path[d]);
                label.Add(current[d]);
                path.Add(parent.Count - 1);
            }

            tokenNode[t] = path[current.Length];
            previous = current;
        }

        int nodes = parent.Count;
        var edgeStart = new int[nodes + 1];
        for (int i = 1; i < nodes; i++)
        {
            edgeStart[parent[i] + 1]++;
        }

        for (int i = 0; i < nodes; i++)
        {
            edgeStart[i + 1] += edgeStart[i];
        }

        var fill = (int[])edgeStart.Clone();
        var edgeByte = new byte[nodes - 1];
        var edgeChild = new int[nodes - 1];
        for (int i = 1; i < nodes; i++)
        {
            int at = fill[parent[i]]++;
            edgeByte[at] = label[i];
            edgeChild[at] = i;
        }

        var tokenStart = new int[nodes + 1];
        foreach (int node in tokenNode)
        {
            tokenStart[node + 1]++;
        }

        for (int i = 0; i < nodes; i++)
        {
            tokenStart[i + 1] += tokenStart[i];
        }

        var tokenFill = (int[])tokenStart.Clone();
        var tokenIds = new int[sorted.Length];
        for (int t = 0; t < sorted.Length; t++)
        {
            tokenIds[tokenFill[tokenNode[t]]++] = sorted[t];
        }

        return new TokenTrie(edgeStart, edgeByte, edgeChild, tokenStart, tokenIds, sorted.Length);
    }
}
