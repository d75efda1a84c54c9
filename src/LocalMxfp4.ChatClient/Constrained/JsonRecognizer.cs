using System.Runtime.CompilerServices;

namespace LocalMxfp4.ChatClient.Constrained;

/// <summary>
/// A byte-level pushdown recognizer for a <see cref="JsonGrammar"/>: <see cref="Advance"/> accepts a byte only if the
/// text so far can still be completed into a valid reply. It also knows the fewest bytes that complete the text
/// (<see cref="Distance"/>), which lets the token mask keep a reply finishable within the token budget.
/// </summary>
/// <remarks>
/// State changes are logged (<see cref="Save"/> / <see cref="Restore"/>), so the token mask can try every token of the
/// vocabulary byte by byte along a trie and roll back, at the cost of copying a frame per byte.
/// Whitespace between tokens is allowed in runs of at most <see cref="MaxWhitespaceRun"/> bytes and values nest at
/// most <see cref="MaxDepth"/> deep: bounds that keep a weak model from writing whitespace or brackets forever.
/// </remarks>
internal sealed class JsonRecognizer
{
    public const int MaxDepth = 48;
    public const int MaxWhitespaceRun = 16;

    private const int Consumed = 0, Rejected = 1, Retry = 2;

    // Root phases.
    private const byte RootStart = 0, RootValue = 1, RootAfter = 2, RootSeparator = 3;

    // Object phases.
    private const byte ObjOpen = 0, ObjKey = 1, ObjKeyChild = 2, ObjColon = 3, ObjValueWait = 4, ObjValueChild = 5, ObjAfterValue = 6, ObjComma = 7;

    // Array phases.
    private const byte ArrOpen = 0, ArrValueChild = 1, ArrAfterValue = 2, ArrValueWait = 3;

    // String phases.
    private const byte StrBody = 0, StrEscape = 1, StrUnicode = 2;

    private const int AnyContinuation = 0x80 | (0xBF << 8);

    private readonly JsonGrammar _grammar;
    private readonly GrammarNode[] _nodes;
    private readonly RecognizerFrame[] _stack = new RecognizerFrame[MaxDepth + 1];
    private int _count;
    private RecognizerFrame[] _undoFrames = new RecognizerFrame[256];
    private int[] _undoSlots = new int[256];
    private int _undoCount;

    public JsonRecognizer(JsonGrammar grammar)
    {
        _grammar = grammar;
        _nodes = grammar.Nodes;
        _stack[0] = new RecognizerFrame { Kind = FrameKind.Root, Node = grammar.Root };
        _count = 1;
    }

    /// <summary>A point to return to with <see cref="Restore"/>.</summary>
    public readonly record struct Checkpoint(int Count, int Undo);

    /// <summary>Whether the text so far is a complete reply (end of sequence may come now).</summary>
    public bool IsComplete
    {
        get
        {
            if (_count == 1)
            {
                return _stack[0].Phase == RootAfter;
            }

            if (_count != 2)
            {
                return false;
            }

            ref RecognizerFrame top = ref _stack[1];
            return top.Kind switch
            {
                FrameKind.Number => _nodes[top.Node].Range!.IsAccepting(NumberOf(in top)),
                FrameKind.Literal => _nodes[top.Node].Literals!.Exact(top.A, top.B, top.C) >= 0,
                _ => false,
            };
        }
    }

    /// <summary>The fewest bytes that turn the text so far into a complete reply (0 when it is one).</summary>
    public int Distance
    {
        get
        {
            ref RecognizerFrame top = ref _stack[_count - 1];
            return top.BaseDistance + Remaining(in top);
        }
    }

    public Checkpoint Save() => new(_count, _undoCount);

    /// <summary>Undoes every change since <paramref name="checkpoint"/>.</summary>
    public void Restore(Checkpoint checkpoint)
    {
        for (int i = _undoCount - 1; i >= checkpoint.Undo; i--)
        {
            _stack[_undoSlots[i]] = _undoFrames[i];
        }

        _undoCount = checkpoint.Undo;
        _count = checkpoint.Count;
    }

    /// <summary>Forgets the undo log: the current state becomes the base for the next <see cref="Save"/>.</summary>
    public void Commit() => _undoCount = 0;

    /// <summary>
    /// Whether the innermost value is the body of a string without a format, with no escape or UTF-8 sequence pending:
    /// there every plain text character is allowed and changes nothing but the length. <paramref name="charactersLeft"/>
    /// is what maxLength still allows, <paramref name="charactersMissing"/> what minLength still needs.
    /// </summary>
    public bool InPlainStringBody(out int charactersLeft, out int charactersMissing)
    {
        ref RecognizerFrame top = ref _stack[_count - 1];
        if (top.Kind == FrameKind.String && top.Phase == StrBody && top.B == 0 && _nodes[top.Node].Format is null)
        {
            GrammarNode n = _nodes[top.Node];
            charactersLeft = n.MaxChars - top.A;
            charactersMissing = Math.Max(0, n.MinChars - top.A);
            return true;
        }

        charactersLeft = charactersMissing = 0;
        return false;
    }

    /// <summary>Consumes one byte if the text stays a prefix of some valid reply. On false the state is undefined: restore a checkpoint.</summary>
    public bool Advance(byte b)
    {
        while (true)
        {
            ref RecognizerFrame f = ref _stack[_count - 1];
            int result;
            switch (f.Kind)
            {
                case FrameKind.Root:
                    return AdvanceRoot(ref f, b);
                case FrameKind.Object:
                    return AdvanceObject(ref f, b);
                case FrameKind.Array:
                    return AdvanceArray(ref f, b);
                case FrameKind.String:
                    return AdvanceString(ref f, b);
                case FrameKind.Number:
                    result = AdvanceNumber(ref f, b);
                    break;
                default:
                    result = AdvanceLiteral(ref f, b);
                    break;
            }

            // A number or literal that could have gone on ended before this byte: it belongs to the parent.
            if (result != Retry)
            {
                return result == Consumed;
            }
        }
    }

    private bool AdvanceRoot(ref RecognizerFrame f, byte b)
    {
        switch (f.Phase)
        {
            case RootStart or RootSeparator:
                if (IsWhitespace(b))
                {
                    return Whitespace(ref f);
                }

                ref RecognizerFrame t = ref Touch();
                t.Phase = RootValue;
                t.Whitespace = 0;
                return StartValue(t.Node, b);
            case RootAfter when _grammar.MaxRootValues > 1:
                if (IsWhitespace(b))
                {
                    return Whitespace(ref f);
                }

                if (b == ';' && f.A < _grammar.MaxRootValues)
                {
                    ref RecognizerFrame s = ref Touch();
                    s.Phase = RootSeparator;
                    s.Whitespace = 0;
                    return true;
                }

                return false;
            default:
                return false;
        }
    }

    private bool AdvanceObject(ref RecognizerFrame f, byte b)
    {
        GrammarNode n = _nodes[f.Node];
        bool map = n.MapValue >= 0;
        switch (f.Phase)
        {
            case ObjOpen or ObjComma:
                if (IsWhitespace(b))
                {
                    return Whitespace(ref f);
                }

                if (b == '"')
                {
                    return StartKey(ref f, n);
                }

                if (b == '}' && f.Phase == ObjOpen && (map || n.RequiredCountAfter[0] == 0))
                {
                    Pop(0);
                    return true;
                }

                return false;
            case ObjKey:
                return AdvanceKey(ref f, n, b);
            case ObjColon:
                if (IsWhitespace(b))
                {
                    return Whitespace(ref f);
                }

                if (b == ':')
                {
                    ref RecognizerFrame t = ref Touch();
                    t.Phase = ObjValueWait;
                    t.Whitespace = 0;
                    return true;
                }

                return false;
            case ObjValueWait:
                if (IsWhitespace(b))
                {
                    return Whitespace(ref f);
                }

                ref RecognizerFrame v = ref Touch();
                v.Phase = ObjValueChild;
                v.Whitespace = 0;
                return StartValue(ValueNode(n, v.D, v.E), b);
            case ObjAfterValue:
                if (IsWhitespace(b))
                {
                    return Whitespace(ref f);
                }

                if (b == ',' && (map || AnyAllowedAfter(n, f.D)))
                {
                    ref RecognizerFrame t = ref Touch();
                    t.Phase = ObjComma;
                    t.Whitespace = 0;
                    return true;
                }

                if (b == '}' && (map || n.RequiredCountAfter[f.D + 1] == 0))
                {
                    Pop(0);
                    return true;
                }

                return false;
            default:
                return false;
        }
    }

    private bool StartKey(ref RecognizerFrame f, GrammarNode n)
    {
        if (n.MapValue >= 0)
        {
            ref RecognizerFrame m = ref Touch();
            m.Phase = ObjKeyChild;
            m.Whitespace = 0;
            return StartValue(n.MapKey, (byte)'"');
        }

        if (n.Keys is not { } keys || !AnyAllowed(n, 0, keys.Count, f.D))
        {
            return false;
        }

        ref RecognizerFrame t = ref Touch();
        t.Phase = ObjKey;
        t.A = 0;
        t.B = keys.Count;
        t.C = 0;
        t.Whitespace = 0;
        return true;
    }

    private bool AdvanceKey(ref RecognizerFrame f, GrammarNode n, byte b)
    {
        LiteralSet keys = n.Keys!;
        int lo = f.A, hi = f.B;

        // Key bytes are the JSON-escaped name, so a '"' that continues some key is escaped text, never the closing quote.
        if (keys.Narrow(ref lo, ref hi, f.C, b) && AnyAllowed(n, lo, hi, f.D))
        {
            ref RecognizerFrame t = ref Touch();
            t.A = lo;
            t.B = hi;
            t.C++;
            return true;
        }

        if (b == '"' && keys.Exact(f.A, f.B, f.C) is int exact and >= 0)
        {
            int property = keys.OriginalIndex(exact);
            if (Allowed(n, property, f.D))
            {
                ref RecognizerFrame t = ref Touch();
                t.Phase = ObjColon;
                t.D = property;
                t.Whitespace = 0;
                return true;
            }
        }

        return false;
    }

    private bool AdvanceArray(ref RecognizerFrame f, byte b)
    {
        GrammarNode n = _nodes[f.Node];
        if (IsWhitespace(b) && f.Phase != ArrValueChild)
        {
            return Whitespace(ref f);
        }

        switch (f.Phase)
        {
            case ArrOpen:
                if (b == ']')
                {
                    if (n.MinItems > 0)
                    {
                        return false;
                    }

                    Pop(0);
                    return true;
                }

                if (n.MaxItems == 0)
                {
                    return false;
                }

                ref RecognizerFrame t = ref Touch();
                t.Phase = ArrValueChild;
                t.A = 1;
                t.Whitespace = 0;
                return StartValue(n.Items, b);
            case ArrAfterValue:
                if (b == ',' && f.A < n.MaxItems)
                {
                    ref RecognizerFrame c = ref Touch();
                    c.Phase = ArrValueWait;
                    c.Whitespace = 0;
                    return true;
                }

                if (b == ']' && f.A >= n.MinItems)
                {
                    Pop(0);
                    return true;
                }

                return false;
            case ArrValueWait:
                ref RecognizerFrame w = ref Touch();
                w.Phase = ArrValueChild;
                w.A++;
                w.Whitespace = 0;
                return StartValue(n.Items, b);
            default:
                return false;
        }
    }

    private bool AdvanceString(ref RecognizerFrame f, byte b)
    {
        GrammarNode n = _nodes[f.Node];
        if (n.Format is { } format)
        {
            return AdvanceFormat(ref f, format, b);
        }

        switch (f.Phase)
        {
            case StrBody:
                if (f.B > 0)
                {
                    if (b < (f.E & 0xFF) || b > (f.E >> 8))
                    {
                        return false;
                    }

                    ref RecognizerFrame c = ref Touch();
                    c.B--;
                    c.E = AnyContinuation;
                    return true;
                }

                if (b == '"')
                {
                    if (f.A < n.MinChars)
                    {
                        return false;
                    }

                    Pop(0);
                    return true;
                }

                if (f.A >= n.MaxChars || b < 0x20)
                {
                    return false;
                }

                if (b == '\\')
                {
                    ref RecognizerFrame e = ref Touch();
                    e.Phase = StrEscape;
                    e.A++;
                    return true;
                }

                if (b < 0x80)
                {
                    Touch().A++;
                    return true;
                }

                // A UTF-8 lead byte; the ranges of the first continuation byte exclude overlong forms and surrogates
                // (RFC 3629), so the string is always valid UTF-8 that every JSON parser accepts.
                (int pending, int range) = b switch
                {
                    >= 0xC2 and <= 0xDF => (1, AnyContinuation),
                    0xE0 => (2, 0xA0 | (0xBF << 8)),
                    0xED => (2, 0x80 | (0x9F << 8)),
                    >= 0xE1 and <= 0xEF => (2, AnyContinuation),
                    0xF0 => (3, 0x90 | (0xBF << 8)),
                    >= 0xF1 and <= 0xF3 => (3, AnyContinuation),
                    0xF4 => (3, 0x80 | (0x8F << 8)),
                    _ => (0, 0),
                };
                if (pending == 0)
                {
                    return false;
                }

                ref RecognizerFrame u = ref Touch();
                u.A++;
                u.B = pending;
                u.E = range;
                return true;
            case StrEscape:
                if (b is (byte)'"' or (byte)'\\' or (byte)'/' or (byte)'b' or (byte)'f' or (byte)'n' or (byte)'r' or (byte)'t')
                {
                    Touch().Phase = StrBody;
                    return true;
                }

                if (b == 'u')
                {
                    ref RecognizerFrame x = ref Touch();
                    x.Phase = StrUnicode;
                    x.C = 0;
                    x.D = 0;
                    return true;
                }

                return false;
            case StrUnicode:
                int digit = HexValue(b);
                if (digit < 0)
                {
                    return false;
                }

                int value = (f.D << 4) | digit;

                // \uD800–\uDFFF would be a lone surrogate, which strict parsers (System.Text.Json) reject.
                if (f.C == 1 && value is >= 0xD8 and <= 0xDF)
                {
                    return false;
                }

                ref RecognizerFrame h = ref Touch();
                h.D = value;
                h.C++;
                if (h.C == 4)
                {
                    h.Phase = StrBody;
                }

                return true;
            default:
                return false;
        }
    }

    private bool AdvanceFormat(ref RecognizerFrame f, StringFormat format, byte b)
    {
        int segment = f.B;
        if (b == '"')
        {
            if (segment < format.Segments.Length)
            {
                return false;
            }

            Pop(0);
            return true;
        }

        if (segment >= format.Segments.Length)
        {
            return false;
        }

        LiteralSet set = format.Segments[segment];
        int lo = f.D, hi = f.E;
        if (!set.Narrow(ref lo, ref hi, f.C, b))
        {
            return false;
        }

        ref RecognizerFrame t = ref Touch();
        t.A++;
        t.C++;
        if (t.C == set.MinLength)
        {
            t.B++;
            t.C = 0;
            t.D = 0;
            t.E = t.B < format.Segments.Length ? format.Segments[t.B].Count : 0;
        }
        else
        {
            t.D = lo;
            t.E = hi;
        }

        return true;
    }

    private int AdvanceNumber(ref RecognizerFrame f, byte b)
    {
        NumberRange range = _nodes[f.Node].Range!;
        NumberState s = NumberOf(in f);
        if (range.Step(ref s, b))
        {
            ref RecognizerFrame t = ref Touch();
            t.Phase = (byte)s.Phase;
            t.Negative = s.Negative;
            t.L = s.Mantissa;
            t.A = s.IntegerDigits;
            t.B = s.FractionDigits;
            return Consumed;
        }

        if (range.IsAccepting(s))
        {
            Pop(0);
            return Retry;
        }

        return Rejected;
    }

    private int AdvanceLiteral(ref RecognizerFrame f, byte b)
    {
        LiteralSet set = _nodes[f.Node].Literals!;
        int lo = f.A, hi = f.B;
        if (set.Narrow(ref lo, ref hi, f.C, b))
        {
            ref RecognizerFrame t = ref Touch();
            t.A = lo;
            t.B = hi;
            t.C++;
            if (!set.CanExtend(lo, hi, t.C))
            {
                Pop(set.OriginalIndex(lo));
            }

            return Consumed;
        }

        if (set.Exact(f.A, f.B, f.C) is int exact and >= 0)
        {
            Pop(set.OriginalIndex(exact));
            return Retry;
        }

        return Rejected;
    }

    /// <summary>Starts a value of <paramref name="nodeId"/> with byte <paramref name="b"/>; the parent (top) is already in its waiting phase.</summary>
    private bool StartValue(int nodeId, byte b)
    {
        int target = _nodes[nodeId].Dispatch[b];
        if (target < 0 || _count >= MaxDepth)
        {
            return false;
        }

        GrammarNode n = _nodes[target];
        ref RecognizerFrame parent = ref _stack[_count - 1];
        var child = new RecognizerFrame { Node = target, BaseDistance = parent.BaseDistance + Remaining(in parent) };
        switch (n.Kind)
        {
            case NodeKind.Object:
                child.Kind = FrameKind.Object;
                child.D = -1;
                child.E = -1;
                Push(in child);
                return true;
            case NodeKind.Array:
                child.Kind = FrameKind.Array;
                Push(in child);
                return true;
            case NodeKind.String:
                child.Kind = FrameKind.String;
                if (n.Format is { } format)
                {
                    child.E = format.Segments[0].Count;
                }

                Push(in child);
                return true;
            case NodeKind.Number:
                child.Kind = FrameKind.Number;
                Push(in child);
                return AdvanceNumber(ref _stack[_count - 1], b) == Consumed;
            case NodeKind.Literal:
                child.Kind = FrameKind.Literal;
                child.B = n.Literals!.Count;
                Push(in child);
                return AdvanceLiteral(ref _stack[_count - 1], b) == Consumed;
            default:
                return false;
        }
    }

    /// <summary>Ends the top frame and moves its parent past the value; <paramref name="result"/> is the literal chosen, if any.</summary>
    private void Pop(int result)
    {
        _count--;
        ref RecognizerFrame p = ref Touch();
        p.Whitespace = 0;
        switch (p.Kind)
        {
            case FrameKind.Root:
                p.Phase = RootAfter;
                p.A++;
                break;
            case FrameKind.Object:
                if (p.Phase == ObjKeyChild)
                {
                    p.Phase = ObjColon;
                }
                else
                {
                    p.Phase = ObjAfterValue;
                    if (p.D == 0 && _nodes[p.Node].DependentValues is not null)
                    {
                        p.E = result;
                    }
                }

                break;
            case FrameKind.Array:
                p.Phase = ArrAfterValue;
                break;
        }
    }

    private int Remaining(in RecognizerFrame f)
    {
        GrammarNode n = _nodes[f.Node];
        switch (f.Kind)
        {
            case FrameKind.Root:
                return f.Phase is RootStart or RootSeparator ? n.MinLength : 0;
            case FrameKind.Object:
                return n.MapValue >= 0 ? RemainingInMap(in f, n) : RemainingInObject(in f, n);
            case FrameKind.Array:
                int item = _nodes[n.Items].MinLength;
                return f.Phase switch
                {
                    ArrOpen => n.MinItems == 0 ? 1 : (n.MinItems * (item + 1)),
                    ArrValueWait => item + (Math.Max(0, n.MinItems - f.A - 1) * (1 + item)) + 1,
                    _ => (Math.Max(0, n.MinItems - f.A) * (1 + item)) + 1,
                };
            case FrameKind.String:
                if (n.Format is { } format)
                {
                    return f.B >= format.Segments.Length ? 1 : format.RemainingAfter[f.B + 1] + format.Segments[f.B].MinLength - f.C + 1;
                }

                int escape = f.Phase switch
                {
                    StrEscape => 1,
                    StrUnicode => 4 - f.C,
                    _ => 0,
                };
                return 1 + escape + f.B + Math.Max(0, n.MinChars - f.A);
            case FrameKind.Number:
                return n.Range!.MinRemaining(NumberOf(in f));
            default:
                LiteralSet set = n.Literals!;
                return set.Exact(f.A, f.B, f.C) >= 0 ? 0 : set.MinRemaining(f.A, f.B, f.C);
        }
    }

    private int RemainingInMap(in RecognizerFrame f, GrammarNode n)
    {
        int value = _nodes[n.MapValue].MinLength;
        return f.Phase switch
        {
            ObjOpen or ObjValueChild or ObjAfterValue => 1,
            ObjKeyChild or ObjColon => 1 + value + 1,
            ObjValueWait => value + 1,
            _ => 2 + 1 + value + 1, // after a comma: "": value }
        };
    }

    private int RemainingInObject(in RecognizerFrame f, GrammarNode n)
    {
        switch (f.Phase)
        {
            case ObjOpen:
                return n.RequiredCountAfter[0] == 0 ? 1 : n.RequiredBytesAfter[0];
            case ObjKey:
                int best = GrammarNode.Unreachable;
                for (int i = f.A; i < f.B; i++)
                {
                    int k = n.Keys!.OriginalIndex(i);
                    if (Allowed(n, k, f.D))
                    {
                        int rest = n.Keys[i].Length - f.C + 2 + ValueMin(n, k, f.E) + n.RequiredBytesAfter[k + 1] + 1;
                        best = Math.Min(best, rest);
                    }
                }

                return best;
            case ObjColon:
                return 1 + ValueMin(n, f.D, f.E) + n.RequiredBytesAfter[f.D + 1] + 1;
            case ObjValueWait:
                return ValueMin(n, f.D, f.E) + n.RequiredBytesAfter[f.D + 1] + 1;
            case ObjComma:
                int least = GrammarNode.Unreachable;
                for (int k = f.D + 1; k <= n.NextLimit[f.D + 1]; k++)
                {
                    int rest = n.Properties[k].Key.Length + 3 + ValueMin(n, k, f.E) + n.RequiredBytesAfter[k + 1] + 1;
                    least = Math.Min(least, rest);
                }

                return least;
            default:
                // Waiting for a value, or after one. After a tool call's name, that tool's parameters are still due.
                int dependent = f.D == 0 && f.E >= 0 && n.DependentValues is not null ? _nodes[n.Properties[0].Node].Literals!.ExtraOf(f.E) : 0;
                return n.RequiredBytesAfter[f.D + 1] + 1 + dependent;
        }
    }

    private int ValueMin(GrammarNode n, int property, int choice)
    {
        int node = n.Properties[property].Node;
        return node >= 0 ? _nodes[node].MinLength : GrammarBuilder.ValueMinLength(_nodes, n, property, choice);
    }

    private static int ValueNode(GrammarNode n, int property, int choice) =>
        n.MapValue >= 0 ? n.MapValue
        : n.Properties[property].Node >= 0 ? n.Properties[property].Node
        : n.DependentValues![choice];

    /// <summary>Properties are written in declaration order; after property d comes any later one up to the next required one.</summary>
    private static bool Allowed(GrammarNode n, int property, int cursor) => property > cursor && property <= n.NextLimit[cursor + 1];

    private static bool AnyAllowedAfter(GrammarNode n, int cursor) => cursor + 1 <= n.NextLimit[cursor + 1];

    private static bool AnyAllowed(GrammarNode n, int lo, int hi, int cursor)
    {
        for (int i = lo; i < hi; i++)
        {
            if (Allowed(n, n.Keys!.OriginalIndex(i), cursor))
            {
                return true;
            }
        }

        return false;
    }

    private static NumberState NumberOf(in RecognizerFrame f) => new()
    {
        Phase = (NumberPhase)f.Phase,
        Negative = f.Negative,
        Mantissa = f.L,
        IntegerDigits = f.A,
        FractionDigits = f.B,
    };

    private bool Whitespace(ref RecognizerFrame f)
    {
        if (f.Whitespace >= MaxWhitespaceRun)
        {
            return false;
        }

        Touch().Whitespace++;
        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool IsWhitespace(byte b) => b is (byte)' ' or (byte)'\n' or (byte)'\r' or (byte)'\t';

    private static int HexValue(byte b) => b switch
    {
        >= (byte)'0' and <= (byte)'9' => b - '0',
        >= (byte)'a' and <= (byte)'f' => b - 'a' + 10,
        >= (byte)'A' and <= (byte)'F' => b - 'A' + 10,
        _ => -1,
    };

    private ref RecognizerFrame Touch()
    {
        int slot = _count - 1;
        Record(slot);
        return ref _stack[slot];
    }

    private void Push(in RecognizerFrame frame)
    {
        Record(_count);
        _stack[_count++] = frame;
    }

    private void Record(int slot)
    {
        if (_undoCount == _undoFrames.Length)
        {
            Array.Resize(ref _undoFrames, _undoFrames.Length * 2);
            Array.Resize(ref _undoSlots, _undoSlots.Length * 2);
        }

        _undoSlots[_undoCount] = slot;
        _undoFrames[_undoCount++] = _stack[slot];
    }
}
