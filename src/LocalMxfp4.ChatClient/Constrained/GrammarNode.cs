namespace LocalMxfp4.ChatClient.Constrained;

/// <summary>What a grammar node matches.</summary>
internal enum NodeKind : byte
{
    /// <summary><c>{…}</c>: fixed properties in declaration order, or free keys (a map).</summary>
    Object,

    /// <summary><c>[…]</c> of one item node.</summary>
    Array,

    /// <summary>A JSON string, optionally length-limited or following a <see cref="StringFormat"/>.</summary>
    String,

    /// <summary>A JSON number in a <see cref="NumberRange"/>.</summary>
    Number,

    /// <summary>One of a set of exact JSON texts (enum, const, true/false/null).</summary>
    Literal,

    /// <summary>One of several nodes, told apart by their first byte.</summary>
    Union,
}

/// <summary>One property of a fixed-property object node.</summary>
/// <param name="Name">The property name.</param>
/// <param name="Key">The name as it is written between the quotes (JSON-escaped UTF-8).</param>
/// <param name="Node">The value's node; −1 for a tool call's <c>parameters</c>, which depend on the chosen name.</param>
/// <param name="Required">Whether the property must be written.</param>
internal readonly record struct ObjectProperty(string Name, byte[] Key, int Node, bool Required);

/// <summary>
/// A node of a <see cref="JsonGrammar"/>. Nodes refer to each other by index (so recursive schemas are cycles), and
/// everything a recognizer needs per byte — the first-byte dispatch, minimal lengths, required-property suffix sums —
/// is computed once by <see cref="JsonGrammar"/> when the grammar is built.
/// </summary>
internal sealed class GrammarNode(NodeKind kind, string path)
{
    public const int Unreachable = int.MaxValue / 4;

    public NodeKind Kind { get; } = kind;

    /// <summary>The schema location it came from, for error messages.</summary>
    public string Path { get; } = path;

    public int Id { get; set; }

    /// <summary>Bytes of the shortest text this node matches.</summary>
    public int MinLength { get; set; } = Unreachable;

    /// <summary>First byte → the concrete (non-union) node a value starting with it belongs to, or −1.</summary>
    public int[] Dispatch { get; set; } = [];

    // Object.
    public ObjectProperty[] Properties { get; set; } = [];

    /// <summary>Free keys (a map, or any object): the value node of every key; −1 for fixed properties.</summary>
    public int MapValue { get; set; } = -1;

    /// <summary>The free-string node keys are written with, for a map.</summary>
    public int MapKey { get; set; } = -1;

    /// <summary>The property keys, for matching a key byte by byte; <see cref="LiteralSet.OriginalIndex"/> is the property index.</summary>
    public LiteralSet? Keys { get; set; }

    /// <summary>
    /// For a tool call: property 0 is the name (a literal set of tool names) and property 1's value node is
    /// DependentValues[index of the name written].
    /// </summary>
    public int[]? DependentValues { get; set; }

    /// <summary>[c + 1] = bytes to write every required property after property c (each with its comma).</summary>
    public int[] RequiredBytesAfter { get; set; } = [];

    /// <summary>[c + 1] = how many required properties come after property c.</summary>
    public int[] RequiredCountAfter { get; set; } = [];

    /// <summary>[c + 1] = the last property that may follow property c (the next required one, or the last).</summary>
    public int[] NextLimit { get; set; } = [];

    // Array.
    public int Items { get; set; } = -1;

    public int MinItems { get; set; }

    public int MaxItems { get; set; } = int.MaxValue;

    // String.
    public int MinChars { get; set; }

    public int MaxChars { get; set; } = int.MaxValue;

    public StringFormat? Format { get; set; }

    // Number.
    public NumberRange? Range { get; set; }

    // Literal.
    public LiteralSet? Literals { get; set; }

    /// <summary>
    /// For the tool-name literal of a tool call: literal i, once chosen, still costs ExtraBytes + the minimal length of
    /// ExtraNodes[i] (", "parameters": " and that tool's parameters).
    /// </summary>
    public int[]? ExtraNodes { get; set; }

    public int ExtraBytes { get; set; }

    // Union.
    public int[] Branches { get; set; } = [];
}
