namespace LocalMxfp4.ChatClient.Constrained;

/// <summary>Where a number being written stands.</summary>
internal enum NumberPhase : byte
{
    Start,
    Minus,
    Zero,
    Integer,
    Dot,
    Fraction,
}

/// <summary>A number being written: its phase, sign and digits so far (all digits, integer then fraction, in one mantissa).</summary>
internal struct NumberState
{
    public NumberPhase Phase;
    public bool Negative;
    public long Mantissa;
    public int IntegerDigits;
    public int FractionDigits;
}

/// <summary>
/// The numbers a schema allows, and the byte-level rules for writing one: <c>-?(0|[1-9][0-9]*)(\.[0-9]+)?</c> with at most
/// <see cref="IntegerDigitCap"/> integer and <see cref="FractionDigitCap"/> fraction digits and no exponent, inside
/// [minimum, maximum]. Values are held as integers scaled by 10^FractionDigitCap, so bounds are exact.
/// </summary>
/// <remarks>
/// The caps are a deliberate subset of JSON numbers: every value written fits any .NET numeric type a schema is made
/// from (an unbounded <c>integer</c> gets at most 9 digits, so it fits an <c>int</c>), and a prefix is extended only
/// while some value in range can still be reached, so the model can never paint itself into a number that fails.
/// </remarks>
internal sealed class NumberRange
{
    /// <summary>Integer digits when the schema gives no bound that needs more (fits Int32).</summary>
    public const int DefaultIntegerDigits = 9;

    /// <summary>Fraction digits of a non-integer number.</summary>
    public const int DefaultFractionDigits = 6;

    private const int Unreachable = int.MaxValue / 4;
    private static readonly long[] Pow10 = [.. Enumerable.Range(0, 19).Select(i => (long)Math.Pow(10, i))];

    private NumberRange(bool integer, int integerDigits, int fractionDigits, long lo, long hi)
    {
        IsInteger = integer;
        IntegerDigitCap = integerDigits;
        FractionDigitCap = fractionDigits;
        Scale = Pow10[fractionDigits];
        Lo = lo;
        Hi = hi;
        NumberState start = default;
        MinLength = MinRemaining(start);
    }

    public bool IsInteger { get; }

    public int IntegerDigitCap { get; }

    public int FractionDigitCap { get; }

    /// <summary>10^FractionDigitCap: the value 1 in scaled units.</summary>
    public long Scale { get; }

    /// <summary>The smallest allowed value, scaled.</summary>
    public long Lo { get; }

    /// <summary>The largest allowed value, scaled.</summary>
    public long Hi { get; }

    /// <summary>Bytes of the shortest allowed number.</summary>
    public int MinLength { get; }

    /// <summary>Any number within the default caps.</summary>
    public static NumberRange Any(bool integer) => Create(integer, null, false, null, false)!;

    /// <summary>
    /// The range for the given bounds, or null when no number within the caps satisfies them. Exclusive bounds are
    /// moved one step (1, or 10^-6 for numbers) inwards.
    /// </summary>
    public static NumberRange? Create(bool integer, decimal? minimum, bool minimumExclusive, decimal? maximum, bool maximumExclusive)
    {
        int fraction = integer ? 0 : DefaultFractionDigits;
        int maxIntegerDigits = 18 - fraction;
        decimal scale = Pow10[fraction];
        decimal limit = Pow10[maxIntegerDigits] * scale - 1;
        decimal? lo = minimum is decimal min ? (minimumExclusive ? Math.Floor(min * scale) + 1 : Math.Ceiling(min * scale)) : null;
        decimal? hi = maximum is decimal max ? (maximumExclusive ? Math.Ceiling(max * scale) - 1 : Math.Floor(max * scale)) : null;
        lo = lo is decimal l ? Math.Clamp(l, -limit, limit) : null;
        hi = hi is decimal h ? Math.Clamp(h, -limit, limit) : null;

        // Widen the digit cap only as far as a given bound needs.
        int digits = DefaultIntegerDigits;
        foreach (decimal? bound in new[] { lo, hi })
        {
            if (bound is decimal b)
            {
                decimal whole = Math.Floor(Math.Abs(b) / scale);
                int n = whole < 1 ? 1 : whole.ToString(System.Globalization.CultureInfo.InvariantCulture).Length;
                digits = Math.Max(digits, Math.Min(n, maxIntegerDigits));
            }
        }

        long cap = Pow10[digits] * Pow10[fraction] - 1;
        long low = lo is decimal lv ? (long)Math.Max(lv, -cap) : -cap;
        long high = hi is decimal hv ? (long)Math.Min(hv, cap) : cap;
        if (low > high)
        {
            return null;
        }

        var range = new NumberRange(integer, digits, fraction, low, high);
        return range.MinLength >= Unreachable ? null : range;
    }

    /// <summary>Whether the value written so far is a complete number in range.</summary>
    public bool IsAccepting(in NumberState s)
    {
        if (s.Phase is not (NumberPhase.Zero or NumberPhase.Integer or NumberPhase.Fraction))
        {
            return false;
        }

        long v = s.Mantissa * Pow10[FractionDigitCap - s.FractionDigits];
        v = s.Negative ? -v : v;
        return v >= Lo && v <= Hi;
    }

    /// <summary>Appends one byte if the result can still become a number in range.</summary>
    public bool Step(ref NumberState s, byte b)
    {
        NumberState n = s;
        bool digit = b is >= (byte)'0' and <= (byte)'9';
        int d = b - '0';
        switch (s.Phase)
        {
            case NumberPhase.Start when b == '-':
                n.Phase = NumberPhase.Minus;
                n.Negative = true;
                break;
            case NumberPhase.Start or NumberPhase.Minus when digit:
                n.Phase = d == 0 ? NumberPhase.Zero : NumberPhase.Integer;
                n.Mantissa = d;
                n.IntegerDigits = 1;
                break;
            case NumberPhase.Integer when digit && s.IntegerDigits < IntegerDigitCap:
                n.Mantissa = (s.Mantissa * 10) + d;
                n.IntegerDigits++;
                break;
            case NumberPhase.Zero or NumberPhase.Integer when b == '.' && FractionDigitCap > 0:
                n.Phase = NumberPhase.Dot;
                break;
            case NumberPhase.Dot or NumberPhase.Fraction when digit && s.FractionDigits < FractionDigitCap:
                n.Phase = NumberPhase.Fraction;
                n.Mantissa = (s.Mantissa * 10) + d;
                n.FractionDigits++;
                break;
            default:
                return false;
        }

        if (MinRemaining(n) >= Unreachable)
        {
            return false;
        }

        s = n;
        return true;
    }

    /// <summary>The fewest bytes that turn <paramref name="s"/> into a complete number in range (a large value when none can).</summary>
    public int MinRemaining(in NumberState s)
    {
        switch (s.Phase)
        {
            case NumberPhase.Start:
                int best = FromEmpty(negative: false);
                if (Lo <= 0)
                {
                    best = Math.Min(best, 1 + FromEmpty(negative: true));
                }

                return best;
            case NumberPhase.Minus:
                return FromEmpty(negative: true);
            default:
                if (IsAccepting(s))
                {
                    return 0;
                }

                (long mLo, long mHi) = Magnitudes(s.Negative);
                return s.Phase switch
                {
                    NumberPhase.Zero => Fraction(0, Scale - 1, mLo, mHi, FractionDigitCap, 1),
                    NumberPhase.Integer => FromInteger(s.Mantissa, s.IntegerDigits, mLo, mHi),
                    NumberPhase.Dot => Fraction(s.Mantissa * Scale, (s.Mantissa * Scale) + Scale - 1, mLo, mHi, FractionDigitCap, 0),
                    _ => Fraction(
                        s.Mantissa * Pow10[FractionDigitCap - s.FractionDigits],
                        (s.Mantissa * Pow10[FractionDigitCap - s.FractionDigits]) + Pow10[FractionDigitCap - s.FractionDigits] - 1,
                        mLo, mHi, FractionDigitCap - s.FractionDigits, 0),
                };
        }
    }

    // The allowed magnitudes for a sign, as a scaled interval (empty when lo > hi).
    private (long Lo, long Hi) Magnitudes(bool negative) => negative
        ? (Math.Max(0, -Hi), -Lo)
        : (Math.Max(0, Lo), Hi);

    private int FromEmpty(bool negative)
    {
        (long mLo, long mHi) = Magnitudes(negative);
        if (mLo > mHi)
        {
            return Unreachable;
        }

        // "0", then "0.x…"; or a first digit 1-9 and what follows it.
        int best = mLo == 0 ? 1 : 1 + Fraction(0, Scale - 1, mLo, mHi, FractionDigitCap, 1);
        for (int d = 1; d <= 9 && best > 1; d++)
        {
            best = Math.Min(best, 1 + FromInteger(d, 1, mLo, mHi));
        }

        return best;
    }

    // After integer digits a (n of them): k more integer digits, then possibly a fraction.
    private int FromInteger(long a, int n, long mLo, long mHi)
    {
        int best = Unreachable;
        for (int k = 0; n + k <= IntegerDigitCap && k < best; k++)
        {
            long x = a * Pow10[k] * Scale;
            long y = ((a + 1) * Pow10[k] * Scale) - 1;
            long lo = Math.Max(x, mLo), hi = Math.Min(y, mHi);
            if (lo > hi)
            {
                continue;
            }

            if (CeilTo(lo, Scale) <= hi)
            {
                best = Math.Min(best, k);
            }
            else
            {
                int f = Fraction(lo, hi, lo, hi, FractionDigitCap, 1);
                best = Math.Min(best, k + f);
            }
        }

        return best;
    }

    /// <summary>
    /// Bytes to end inside [x, y] ∩ [mLo, mHi] with up to <paramref name="digitsLeft"/> more fraction digits, adding
    /// <paramref name="dotBytes"/> for a '.' still to write. Unreachable when the interval holds no such value.
    /// </summary>
    private static int Fraction(long x, long y, long mLo, long mHi, int digitsLeft, int dotBytes)
    {
        long lo = Math.Max(x, mLo), hi = Math.Min(y, mHi);
        if (lo > hi)
        {
            return Unreachable;
        }

        for (int j = 1; j <= digitsLeft; j++)
        {
            if (CeilTo(lo, Pow10[digitsLeft - j]) <= hi)
            {
                return dotBytes + j;
            }
        }

        return Unreachable;
    }

    private static long CeilTo(long value, long unit) => (value + unit - 1) / unit * unit;
}
