namespace LocalMxfp4.ChatClient.Constrained;

/// <summary>
/// A set of exact byte strings (enum values, <c>true</c>/<c>false</c>/<c>null</c>, tool names, format segments), sorted
/// so that the literals sharing any prefix form one contiguous range: matching byte by byte only narrows a range
/// [lo, hi), which fits in a recognizer frame without allocating.
/// </summary>
internal sealed class LiteralSet
{
    private readonly byte[][] _sorted;
    private readonly int[] _original;
    private int[] _extra;
    private int[] _extraByOriginal;

    public LiteralSet(IReadOnlyList<byte[]> literals)
    {
        if (literals.Count == 0)
        {
            throw new ArgumentException("A literal set needs at least one literal.", nameof(literals));
        }

        int[] order = [.. Enumerable.Range(0, literals.Count)];
        Array.Sort(order, (a, b) => literals[a].AsSpan().SequenceCompareTo(literals[b]));
        _sorted = [.. order.Select(i => literals[i])];
        _original = order;
        _extra = new int[_sorted.Length];
        _extraByOriginal = new int[_sorted.Length];
        MinLength = _sorted.Min(l => l.Length);
    }

    public int Count => _sorted.Length;

    /// <summary>Bytes of the shortest literal plus its extra cost (see <see cref="SetExtra"/>).</summary>
    public int MinLength { get; private set; }

    public ReadOnlySpan<byte> this[int sortedIndex] => _sorted[sortedIndex];

    /// <summary>The index the literal had in the list given to the constructor.</summary>
    public int OriginalIndex(int sortedIndex) => _original[sortedIndex];

    /// <summary>
    /// Narrows [lo, hi) — literals that all share their first <paramref name="pos"/> bytes — to those whose byte at
    /// <paramref name="pos"/> is <paramref name="b"/>. Returns false when none is.
    /// </summary>
    public bool Narrow(ref int lo, ref int hi, int pos, byte b)
    {
        // Within the range the literals are ordered by their byte at pos, the ones that end at pos first.
        int a = lo, z = hi;
        while (a < z)
        {
            int mid = (a + z) >>> 1;
            if (Key(mid, pos) < b)
            {
                a = mid + 1;
            }
            else
            {
                z = mid;
            }
        }

        int first = a;
        z = hi;
        while (a < z)
        {
            int mid = (a + z) >>> 1;
            if (Key(mid, pos) <= b)
            {
                a = mid + 1;
            }
            else
            {
                z = mid;
            }
        }

        if (first == a)
        {
            return false;
        }

        lo = first;
        hi = a;
        return true;
    }

    /// <summary>The sorted index of the literal that is exactly <paramref name="pos"/> bytes long in [lo, hi), or −1.</summary>
    public int Exact(int lo, int hi, int pos) => lo < hi && _sorted[lo].Length == pos ? lo : -1;

    /// <summary>Whether some literal in [lo, hi) is longer than <paramref name="pos"/>.</summary>
    public bool CanExtend(int lo, int hi, int pos) => hi - lo > 1 || (lo < hi && _sorted[lo].Length > pos);

    /// <summary>
    /// Gives each literal (by original index) a cost in bytes that comes due once it is chosen — what a tool call must
    /// still write after naming that tool — so the shortest completion is a joint minimum over name and what follows.
    /// </summary>
    public void SetExtra(IReadOnlyList<int> extraByOriginalIndex)
    {
        for (int i = 0; i < _sorted.Length; i++)
        {
            _extra[i] = extraByOriginalIndex[_original[i]];
            _extraByOriginal[_original[i]] = _extra[i];
        }

        MinLength = Enumerable.Range(0, _sorted.Length).Min(i => _sorted[i].Length + _extra[i]);
    }

    /// <summary>The extra cost of the literal that had index <paramref name="originalIndex"/> in the constructor's list.</summary>
    public int ExtraOf(int originalIndex) => _extraByOriginal[originalIndex];

    /// <summary>The fewest bytes that complete some literal of [lo, hi) after <paramref name="pos"/> bytes, extra cost included.</summary>
    public int MinRemaining(int lo, int hi, int pos)
    {
        int best = int.MaxValue;
        for (int i = lo; i < hi; i++)
        {
            best = Math.Min(best, _sorted[i].Length - pos + _extra[i]);
        }

        return best;
    }

    private int Key(int index, int pos) => pos < _sorted[index].Length ? _sorted[index][pos] : -1;
}
