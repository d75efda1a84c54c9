using System.Globalization;
using System.Text;

namespace LocalMxfp4.ChatClient.Constrained;

/// <summary>
/// A JSON-schema string <c>format</c> enforced as a fixed-length template: a sequence of segments, each a set of
/// equally long ASCII strings (a digit, a month "01"–"12", a hyphen). Templates pick a subset of each format that every
/// parser accepts: days 01–28 (valid in every month), years 1000–9999, UTC times with whole seconds and "Z".
/// </summary>
internal sealed class StringFormat
{
    private static readonly LiteralSet Digit = Range(0, 9, 1);
    private static readonly LiteralSet NonZeroDigit = Range(1, 9, 1);
    private static readonly LiteralSet Hex = Set([.. "0123456789abcdefABCDEF".Select(c => c.ToString())]);
    private static readonly LiteralSet Month = Range(1, 12, 2);
    private static readonly LiteralSet Day = Range(1, 28, 2);
    private static readonly LiteralSet Hour = Range(0, 23, 2);
    private static readonly LiteralSet Sixty = Range(0, 59, 2);

    private StringFormat(string name, LiteralSet[] segments)
    {
        Name = name;
        Segments = segments;
        RemainingAfter = new int[segments.Length + 1];
        for (int i = segments.Length - 1; i >= 0; i--)
        {
            RemainingAfter[i] = RemainingAfter[i + 1] + segments[i].MinLength;
        }
    }

    /// <summary>The formats that can be enforced.</summary>
    public static IReadOnlyList<string> Supported { get; } = ["date-time", "date", "uuid"];

    public string Name { get; }

    public LiteralSet[] Segments { get; }

    /// <summary>Bytes of the segments from index i to the end.</summary>
    public int[] RemainingAfter { get; }

    /// <summary>Characters (= bytes, all ASCII) of a value.</summary>
    public int Length => RemainingAfter[0];

    /// <summary>The template for a format name, or null when it is not one of <see cref="Supported"/>.</summary>
    public static StringFormat? Get(string name) => name switch
    {
        "date" => new StringFormat(name, DateSegments()),
        "date-time" => new StringFormat(name, [.. DateSegments(), Fixed("T"), Hour, Fixed(":"), Sixty, Fixed(":"), Sixty, Fixed("Z")]),
        "uuid" => new StringFormat(name, [.. Repeat(Hex, 8), Fixed("-"), .. Repeat(Hex, 4), Fixed("-"), .. Repeat(Hex, 4), Fixed("-"), .. Repeat(Hex, 4), Fixed("-"), .. Repeat(Hex, 12)]),
        _ => null,
    };

    private static LiteralSet[] DateSegments() => [NonZeroDigit, Digit, Digit, Digit, Fixed("-"), Month, Fixed("-"), Day];

    private static IEnumerable<LiteralSet> Repeat(LiteralSet set, int count) => Enumerable.Repeat(set, count);

    private static LiteralSet Fixed(string text) => Set([text]);

    private static LiteralSet Range(int from, int to, int width) =>
        Set([.. Enumerable.Range(from, to - from + 1).Select(i => i.ToString(CultureInfo.InvariantCulture).PadLeft(width, '0'))]);

    private static LiteralSet Set(IReadOnlyList<string> items) => new([.. items.Select(Encoding.ASCII.GetBytes)]);
}
