using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace LocalMxfp4.Numerics;

/// <summary>
/// The bfloat16 storage format of Hugging Face checkpoints: the upper 16 bits of an IEEE-754 float32.
/// .NET has no BFloat16 type, so conversions are written here; float32 → bfloat16 rounds to nearest even
/// and keeps NaNs quiet, the same rule as PyTorch's <c>tensor.to(torch.bfloat16)</c>.
/// </summary>
[StructLayout(LayoutKind.Sequential, Size = 2)]
public readonly struct BFloat16 : IEquatable<BFloat16>
{
    /// <summary>The raw 16 bits.</summary>
    public ushort Bits { get; }

    private BFloat16(ushort bits) => Bits = bits;

    /// <summary>Wraps raw bits without conversion.</summary>
    public static BFloat16 FromBits(ushort bits) => new(bits);

    /// <summary>Rounds a float32 to the nearest bfloat16 (ties to even).</summary>
    public static BFloat16 FromSingle(float value) => new(RoundToBits(value));

    /// <summary>The exact float32 value of this bfloat16.</summary>
    public float ToSingle() => BitConverter.Int32BitsToSingle(Bits << 16);

    /// <inheritdoc />
    public bool Equals(BFloat16 other) => Bits == other.Bits;

    /// <inheritdoc />
    public override bool Equals(object? obj) => obj is BFloat16 other && Equals(other);

    /// <inheritdoc />
    public override int GetHashCode() => Bits;

    /// <inheritdoc />
    public override string ToString() => ToSingle().ToString("R", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Equality of the raw bits (so +0 and −0 differ, and a NaN equals itself).</summary>
    public static bool operator ==(BFloat16 left, BFloat16 right) => left.Equals(right);

    /// <summary>Inequality of the raw bits.</summary>
    public static bool operator !=(BFloat16 left, BFloat16 right) => !left.Equals(right);

    /// <summary>Float32 bits → bfloat16 bits, round to nearest even, NaN stays NaN.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort RoundToBits(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if ((bits & 0x7FFF_FFFFu) > 0x7F80_0000u)
        {
            // NaN: truncating could clear every mantissa bit and produce Inf, so force a quiet NaN.
            return (ushort)((bits >> 16) | 0x0040u);
        }

        uint roundingBias = 0x7FFFu + ((bits >> 16) & 1u);
        return (ushort)((bits + roundingBias) >> 16);
    }

    /// <summary>Widens a span of bfloat16 bit patterns to float32 (exact).</summary>
    public static void ToSingle(ReadOnlySpan<ushort> source, Span<float> destination)
    {
        if (destination.Length < source.Length)
        {
            throw new ArgumentException("Destination is shorter than source.", nameof(destination));
        }

        Span<uint> dst = MemoryMarshal.Cast<float, uint>(destination);
        int i = 0;
        if (Vector.IsHardwareAccelerated && source.Length >= Vector<ushort>.Count)
        {
            int step = Vector<ushort>.Count;
            for (; i <= source.Length - step; i += step)
            {
                Vector.Widen(new Vector<ushort>(source.Slice(i, step)), out Vector<uint> low, out Vector<uint> high);
                (low << 16).CopyTo(dst.Slice(i));
                (high << 16).CopyTo(dst.Slice(i + Vector<uint>.Count));
            }
        }

        for (; i < source.Length; i++)
        {
            dst[i] = (uint)source[i] << 16;
        }
    }

    /// <summary>Rounds a span of float32 to bfloat16 bit patterns (ties to even).</summary>
    public static void FromSingle(ReadOnlySpan<float> source, Span<ushort> destination)
    {
        if (destination.Length < source.Length)
        {
            throw new ArgumentException("Destination is shorter than source.", nameof(destination));
        }

        for (int i = 0; i < source.Length; i++)
        {
            destination[i] = RoundToBits(source[i]);
        }
    }
}
