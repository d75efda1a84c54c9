using System.Text;

namespace LocalMxfp4.ChatClient.Constrained;

/// <summary>
/// Collects grammar nodes (from a schema, the any-JSON value, tool calls) and finishes them into a
/// <see cref="JsonGrammar"/>: minimal lengths by fixpoint (recursive schemas are cycles), the first-byte dispatch of
/// every node, and the per-object tables a recognizer reads on every byte.
/// </summary>
internal sealed class GrammarBuilder
{
    private readonly List<GrammarNode> _nodes = [];
    private int _anyValue = -1;
    private int _freeString = -1;

    public GrammarNode this[int id] => _nodes[id];

    public int Add(GrammarNode node)
    {
        node.Id = _nodes.Count;
        _nodes.Add(node);
        return node.Id;
    }

    /// <summary>A union of <paramref name="branches"/> (−1 entries, the false schema, dropped); −1 when none is left.</summary>
    public int Union(string path, IEnumerable<int> branches)
    {
        int[] kept = [.. branches.Where(b => b >= 0).Distinct()];
        return kept.Length switch
        {
            0 => -1,
            1 => kept[0],
            _ => Add(new GrammarNode(NodeKind.Union, path) { Branches = kept }),
        };
    }

    public int Literals(string path, IReadOnlyList<byte[]> literals) =>
        Add(new GrammarNode(NodeKind.Literal, path) { Literals = new LiteralSet(literals) });

    /// <summary>Any string (object keys of maps, strings of any-JSON values).</summary>
    public int FreeString()
    {
        if (_freeString < 0)
        {
            _freeString = Add(new GrammarNode(NodeKind.String, "#"));
        }

        return _freeString;
    }

    /// <summary>Any JSON value: object with any keys, array, string, number, true, false, null — nested to any depth.</summary>
    public int AnyValue()
    {
        if (_anyValue >= 0)
        {
            return _anyValue;
        }

        // The union is created first so that the object and array inside it can refer back to it.
        var union = new GrammarNode(NodeKind.Union, "#");
        _anyValue = Add(union);
        int obj = Add(new GrammarNode(NodeKind.Object, "#") { MapValue = _anyValue, MapKey = FreeString() });
        int arr = Add(new GrammarNode(NodeKind.Array, "#") { Items = _anyValue });
        int num = Add(new GrammarNode(NodeKind.Number, "#") { Range = NumberRange.Any(integer: false) });
        int lit = Literals("#", [.. new[] { "true", "false", "null" }.Select(Encoding.ASCII.GetBytes)]);
        union.Branches = [obj, arr, FreeString(), num, lit];
        return _anyValue;
    }

    /// <summary>Finishes the nodes into a grammar whose top level is <paramref name="root"/>, up to <paramref name="maxRootValues"/> times separated by ';'.</summary>
    /// <exception cref="JsonSchemaNotSupportedException">The schema cannot be matched by any finite value, or a union is ambiguous.</exception>
    public JsonGrammar Build(int root, int maxRootValues = 1)
    {
        GrammarNode[] nodes = [.. _nodes];
        ComputeMinLengths(nodes);
        foreach (GrammarNode n in nodes)
        {
            if (n.ExtraNodes is { } extra)
            {
                n.Literals!.SetExtra([.. extra.Select(e => Saturate((long)n.ExtraBytes + nodes[e].MinLength))]);
            }
        }

        if (nodes[root].MinLength >= GrammarNode.Unreachable)
        {
            throw new JsonSchemaNotSupportedException("$ref", nodes[root].Path,
                "no finite JSON value satisfies the schema (a required property or item refers back to itself forever).");
        }

        foreach (GrammarNode n in nodes)
        {
            Prune(nodes, n);
        }

        foreach (GrammarNode n in nodes)
        {
            if (n.Kind == NodeKind.Object && n.MapValue < 0)
            {
                FinishObject(nodes, n);
            }
        }

        var done = new bool[nodes.Length];
        var active = new bool[nodes.Length];
        foreach (GrammarNode n in nodes)
        {
            ComputeDispatch(nodes, n, done, active);
        }

        return new JsonGrammar(nodes, root, maxRootValues);
    }

    private static void ComputeMinLengths(GrammarNode[] nodes)
    {
        // Bellman-Ford style: lengths only decrease, and a node on a cycle with no way out stays Unreachable.
        bool changed = true;
        while (changed)
        {
            changed = false;
            foreach (GrammarNode n in nodes)
            {
                int length = MinLength(nodes, n);
                if (length < n.MinLength)
                {
                    n.MinLength = length;
                    changed = true;
                }
            }
        }
    }

    private static int MinLength(GrammarNode[] nodes, GrammarNode n)
    {
        switch (n.Kind)
        {
            case NodeKind.Object when n.MapValue >= 0:
                return 2;
            case NodeKind.Object:
                long total = 2;
                int required = 0;
                for (int i = 0; i < n.Properties.Length; i++)
                {
                    // A dependent property (a tool call's parameters) is paid for by the name literal's extra cost.
                    if (n.Properties[i].Required && n.Properties[i].Node >= 0)
                    {
                        total += PropertyBytes(nodes, n, i);
                        required++;
                    }
                }

                return Saturate(total + Math.Max(0, required - 1));
            case NodeKind.Array:
                if (n.MinItems == 0)
                {
                    return 2;
                }

                return Saturate(2 + ((long)n.MinItems * nodes[n.Items].MinLength) + (n.MinItems - 1));
            case NodeKind.String:
                return n.Format is { } format ? 2 + format.Length : Saturate(2L + n.MinChars);
            case NodeKind.Number:
                return n.Range!.MinLength;
            case NodeKind.Literal when n.ExtraNodes is { } extra:
                long best = GrammarNode.Unreachable;
                for (int i = 0; i < extra.Length; i++)
                {
                    best = Math.Min(best, (long)n.Literals![i].Length + n.ExtraBytes + nodes[extra[n.Literals.OriginalIndex(i)]].MinLength);
                }

                return Saturate(best);
            case NodeKind.Literal:
                return n.Literals!.MinLength;
            case NodeKind.Union:
                return n.Branches.Length == 0 ? GrammarNode.Unreachable : n.Branches.Min(b => nodes[b].MinLength);
            default:
                throw new InvalidOperationException($"Unknown node kind {n.Kind}.");
        }
    }

    /// <summary>Bytes of property i written with its shortest value: "key": value (no comma).</summary>
    internal static long PropertyBytes(GrammarNode[] nodes, GrammarNode n, int i, int dependentChoice = -1) =>
        n.Properties[i].Key.Length + 3L + ValueMinLength(nodes, n, i, dependentChoice);

    internal static int ValueMinLength(GrammarNode[] nodes, GrammarNode n, int i, int dependentChoice = -1)
    {
        if (n.Properties[i].Node >= 0)
        {
            return nodes[n.Properties[i].Node].MinLength;
        }

        // A tool call's parameters: the chosen tool's, or the shortest of all before the name is known.
        int[] dependents = n.DependentValues!;
        return dependentChoice >= 0 ? nodes[dependents[dependentChoice]].MinLength : dependents.Min(d => nodes[d].MinLength);
    }

    private static int Saturate(long value) => value >= GrammarNode.Unreachable ? GrammarNode.Unreachable : (int)value;

    // Parts of a schema that cannot be written in finite text (optional recursion with no way out) are removed, so a
    // recognizer never starts something it cannot finish.
    private static void Prune(GrammarNode[] nodes, GrammarNode n)
    {
        switch (n.Kind)
        {
            case NodeKind.Object when n.MapValue < 0:
                n.Properties = [.. n.Properties.Where((p, i) => p.Required || ValueMinLength(nodes, n, i) < GrammarNode.Unreachable)];
                break;
            case NodeKind.Array when nodes[n.Items].MinLength >= GrammarNode.Unreachable:
                n.MaxItems = 0;
                break;
            case NodeKind.Union:
                n.Branches = [.. n.Branches.Where(b => nodes[b].MinLength < GrammarNode.Unreachable)];
                break;
        }
    }

    private static void FinishObject(GrammarNode[] nodes, GrammarNode n)
    {
        int count = n.Properties.Length;
        n.RequiredBytesAfter = new int[count + 1];
        n.RequiredCountAfter = new int[count + 1];
        n.NextLimit = new int[count + 1];
        long bytes = 0;
        int required = 0, commas = 0, limit = count - 1;
        for (int c = count - 1; c >= -1; c--)
        {
            // Index c + 1 describes what comes after property c. A dependent property (a tool call's parameters)
            // is counted as required but its bytes, comma included, belong to the name literal's extra cost.
            n.RequiredBytesAfter[c + 1] = Saturate(bytes + commas);
            n.RequiredCountAfter[c + 1] = required;
            n.NextLimit[c + 1] = limit;
            if (c >= 0 && n.Properties[c].Required)
            {
                if (n.Properties[c].Node >= 0)
                {
                    bytes += PropertyBytes(nodes, n, c);
                    commas++;
                }

                required++;
                limit = c;
            }
        }

        if (count > 0)
        {
            n.Keys = new LiteralSet([.. n.Properties.Select(p => p.Key)]);
        }
    }

    private static void ComputeDispatch(GrammarNode[] nodes, GrammarNode n, bool[] done, bool[] active)
    {
        if (done[n.Id])
        {
            return;
        }

        if (active[n.Id])
        {
            throw new JsonSchemaNotSupportedException("anyOf", n.Path, "a union refers to itself without any object or array in between.");
        }

        active[n.Id] = true;
        int[] dispatch = new int[256];
        Array.Fill(dispatch, -1);
        switch (n.Kind)
        {
            case NodeKind.Object:
                dispatch['{'] = n.Id;
                break;
            case NodeKind.Array:
                dispatch['['] = n.Id;
                break;
            case NodeKind.String:
                dispatch['"'] = n.Id;
                break;
            case NodeKind.Number:
                foreach (byte b in "-0123456789"u8)
                {
                    NumberState start = default;
                    if (n.Range!.Step(ref start, b))
                    {
                        dispatch[b] = n.Id;
                    }
                }

                break;
            case NodeKind.Literal:
                for (int i = 0; i < n.Literals!.Count; i++)
                {
                    dispatch[n.Literals[i][0]] = n.Id;
                }

                break;
            case NodeKind.Union:
                foreach (int b in n.Branches)
                {
                    ComputeDispatch(nodes, nodes[b], done, active);
                    int[] branch = nodes[b].Dispatch;
                    for (int c = 0; c < 256; c++)
                    {
                        if (branch[c] < 0)
                        {
                            continue;
                        }

                        if (dispatch[c] >= 0 && dispatch[c] != branch[c])
                        {
                            throw new JsonSchemaNotSupportedException("anyOf", n.Path,
                                $"two alternatives can both start with '{(char)c}' ({Describe(nodes[dispatch[c]])} and {Describe(nodes[branch[c]])}); " +
                                "alternatives must differ in JSON type (object, array, string, number, boolean, null) or in their enum values.");
                        }

                        dispatch[c] = branch[c];
                    }
                }

                break;
        }

        n.Dispatch = dispatch;
        active[n.Id] = false;
        done[n.Id] = true;
    }

    private static string Describe(GrammarNode n) => $"{n.Kind.ToString().ToLowerInvariant()} at {n.Path}";
}
