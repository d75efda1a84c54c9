using LocalMxfp4.Numerics;

namespace LocalMxfp4.Numerics.Tests;

public class BFloat16Tests
{
    [Theory]
    [InlineData(1.0f, (ushort)0x3F80)]
    [InlineData(-2.0f, (ushort)0xC000)]
    [InlineData(float.PositiveInfinity, (ushort)0x7F80)]
    [InlineData(1.00390625f, (ushort)0x3F80)] // exactly half an ulp above 1.0: tie, rounds to even (down)
    [InlineData(1.01171875f, (ushort)0x3F82)] // 1 + 1.5 ulp: tie, rounds to even (up)
    [InlineData(3.4e38f, (ushort)0x7F80)]     // overflows to infinity under RNE
    public void RoundsToNearestEven(float value, ushort expected)
    {
        Assert.Equal(expected, BFloat16.FromSingle(value).Bits);
    }

    [Fact]
    public void NaNStaysNaN()
    {
        float nanWithLowPayload = BitConverter.Int32BitsToSingle(0x7F80_0001);
        Assert.True(float.IsNaN(BFloat16.FromSingle(nanWithLowPayload).ToSingle()));
    }

    [Fact]
    public void SpanWideningMatchesScalarForEveryBitPattern()
    {
        var all = new ushort[65536];
        for (int i = 0; i < all.Length; i++)
        {
            all[i] = (ushort)i;
        }

        var wide = new float[all.Length];
        BFloat16.ToSingle(all, wide);
        for (int i = 0; i < all.Length; i++)
        {
            Assert.Equal(BitConverter.SingleToUInt32Bits(BFloat16.FromBits(all[i]).ToSingle()), BitConverter.SingleToUInt32Bits(wide[i]));
        }
    }

    [Fact]
    public void RoundTripOfEveryNonNaNPatternIsExact()
    {
        for (int i = 0; i < 65536; i++)
        {
            var b = BFloat16.FromBits((ushort)i);
            float f = b.ToSingle();
            if (!float.IsNaN(f))
            {
                Assert.Equal(b.Bits, BFloat16.FromSingle(f).Bits);
            }
        }
    }
}
