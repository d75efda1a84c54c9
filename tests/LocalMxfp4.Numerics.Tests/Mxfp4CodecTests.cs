using LocalMxfp4.Numerics;
using LocalMxfp4.Numerics.Mxfp4;

namespace LocalMxfp4.Numerics.Tests;

public class E2M1Tests
{
    [Fact]
    public void AllSixteenCodesDecodeToTheOcpTable()
    {
        float[] expected = [0, 0.5f, 1, 1.5f, 2, 3, 4, 6, -0f, -0.5f, -1, -1.5f, -2, -3, -4, -6];
        for (int code = 0; code < 16; code++)
        {
            Assert.Equal(BitConverter.SingleToInt32Bits(expected[code]), BitConverter.SingleToInt32Bits(E2M1.Decode(code)));
            Assert.Equal(expected[code] * 2, E2M1.DoubledValues[code]);
            Assert.Equal(code, E2M1.Encode(E2M1.Decode(code)));
        }
    }

    [Theory]
    [InlineData(0.25f, 0)] // 0 | 0.5 → even 0
    [InlineData(0.75f, 2)] // 0.5 | 1 → even 1.0
    [InlineData(1.25f, 2)] // 1 | 1.5 → even 1.0
    [InlineData(1.75f, 4)] // 1.5 | 2 → even 2.0
    [InlineData(2.5f, 4)]  // 2 | 3 → even 2.0
    [InlineData(3.5f, 6)]  // 3 | 4 → even 4.0
    [InlineData(5f, 6)]    // 4 | 6 → even 4.0
    [InlineData(-0.75f, 10)]
    [InlineData(-5f, 14)]
    [InlineData(0.2500001f, 1)]
    [InlineData(0.7499999f, 1)]
    [InlineData(5.000001f, 7)]
    [InlineData(7.9f, 7)]   // saturation
    [InlineData(1e30f, 7)]
    [InlineData(-1e30f, 15)]
    [InlineData(-0.1f, 8)]  // keeps the sign: −0
    public void RoundsToNearestEvenWithSaturation(float value, int expectedCode)
    {
        Assert.Equal(expectedCode, E2M1.Encode(value));
        Assert.Equal(expectedCode, Mxfp4ReferenceCodec.EncodeElement(value));
    }
}

public class E8M0Tests
{
    [Theory]
    [InlineData(5.0f, ScaleRule.Floor, 127)]
    [InlineData(7.5f, ScaleRule.Floor, 127)]
    [InlineData(0.3f, ScaleRule.Floor, 123)]
    [InlineData(4.0f, ScaleRule.Floor, 127)]
    [InlineData(7.0f, ScaleRule.Even, 128)]    // mantissa 1.75 → next binade
    [InlineData(6.9f, ScaleRule.Even, 127)]
    [InlineData(6.0f, ScaleRule.RoundUp, 127)] // exactly 6·2^0 fits
    [InlineData(6.01f, ScaleRule.RoundUp, 128)]
    [InlineData(4.0f, ScaleRule.RoundUp, 127)]
    [InlineData(1e-45f, ScaleRule.Floor, 0)]   // float32 subnormal clamps to 2^-127
    [InlineData(3.4e38f, ScaleRule.Floor, 252)]
    public void ScaleRules(float amax, ScaleRule rule, int expected)
    {
        Assert.Equal(expected, E8M0.FromAmax(amax, rule));
    }

    [Fact]
    public void ZeroNaNAndInfinity()
    {
        foreach (ScaleRule rule in Enum.GetValues<ScaleRule>())
        {
            Assert.Equal(0, E8M0.FromAmax(0f, rule));
            Assert.Equal(E8M0.NaN, E8M0.FromAmax(float.NaN, rule));
            Assert.Equal(E8M0.NaN, E8M0.FromAmax(float.PositiveInfinity, rule));
        }

        Assert.True(float.IsNaN(E8M0.Decode(0xFF)));
        Assert.Equal(MathF.ScaleB(1f, -127), E8M0.Decode(0));
        Assert.Equal(1f, E8M0.Decode(127));
        Assert.Equal(MathF.ScaleB(1f, 127), E8M0.Decode(254));
    }
}

public class Mxfp4CodecTests
{
    private static float[] Block(params float[] head)
    {
        var b = new float[32];
        head.CopyTo(b, 0);
        return b;
    }

    // duquant-mxfp4.md §1.7 (Floor + RNE).
    [Theory]
    [InlineData(new float[] { 5.0f, -0.3f, 1.25f, 0.75f, 2.5f, -3.5f }, 127, new byte[] { 0x96, 0x22, 0xE4 }, new byte[] { 0x06, 0x09, 0x02 }, new float[] { 4, -0.5f, 1, 1, 2, -4 })]
    [InlineData(new float[] { 7.5f, -7.5f, 0.1f }, 127, new byte[] { 0xF7, 0x00, 0x00 }, new byte[] { 0x07, 0x0F, 0x00 }, new float[] { 6, -6, 0 })]
    [InlineData(new float[] { 0.3f, -0.2f, 0.05f }, 123, new byte[] { 0xD6, 0x02, 0x00 }, new byte[] { 0x06, 0x0D, 0x02 }, new float[] { 0.25f, -0.1875f, 0.0625f })]
    public void SpecTestVectors(float[] head, int scale, byte[] interleaved, byte[] llamaCppQs, float[] dequant)
    {
        float[] block = Block(head);
        var packed = new byte[16];
        var scales = new byte[1];
        Mxfp4Codec.QuantizeRow(block, packed, scales, ScaleRule.Floor);
        Assert.Equal(scale, scales[0]);
        Assert.Equal(interleaved, packed[..3]);

        var ggml = new byte[LlamaCppMxfp4Block.Size];
        LlamaCppMxfp4Block.FromInterleaved(packed, scales, ggml);
        Assert.Equal(scale, ggml[0]);
        Assert.Equal(llamaCppQs, ggml[1..4]);

        var back = new float[32];
        Mxfp4Codec.DequantizeRow(packed, scales, back);
        Assert.Equal(dequant, back[..dequant.Length]);
    }

    public static TheoryData<int, ScaleRule> RandomCases()
    {
        var data = new TheoryData<int, ScaleRule>();
        foreach (ScaleRule rule in Enum.GetValues<ScaleRule>())
        {
            foreach (int seed in new[] { 1, 2, 3 })
            {
                data.Add(seed, rule);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(RandomCases))]
    public void VectorisedCodecEqualsFloat64ReferenceOnRandomRows(int seed, ScaleRule rule)
    {
        var rng = new Random(seed);
        for (int trial = 0; trial < 200; trial++)
        {
            int length = rng.Next(1, 300);
            float[] row = RandomRow(rng, length);
            int blocks = Mxfp4Codec.BlockCount(length);
            var packed = new byte[blocks * 16];
            var scales = new byte[blocks];
            Mxfp4Codec.QuantizeRow(row, packed, scales, rule);

            (byte[] codes, byte[] refScales) = Mxfp4ReferenceCodec.QuantizeRow(row, rule);
            Assert.Equal(refScales, scales);
            for (int i = 0; i < blocks * 32; i++)
            {
                int nibble = (packed[i / 2] >> (4 * (i & 1))) & 0xF;
                if (scales[i / 32] != E8M0.NaN)
                {
                    Assert.True(codes[i] == nibble, $"element {i} of a {length}-row: reference code {codes[i]}, codec {nibble}");
                }
            }

            // Dequantization equals the float64 decode of the same codes, and rounding error stays inside half a step.
            var back = new float[length];
            Mxfp4Codec.DequantizeRow(packed, scales, back);
            for (int i = 0; i < length; i++)
            {
                double expected = Mxfp4ReferenceCodec.Decode(codes[i], refScales[i / 32]);
                if (double.IsNaN(expected))
                {
                    Assert.True(float.IsNaN(back[i]));
                }
                else
                {
                    Assert.Equal(expected, back[i]);
                }
            }
        }
    }

    [Fact]
    public void PaddedRowRoundTripsEveryRepresentableValue()
    {
        // A 172-wide row (stories260K's MLP width) pads to 6 blocks; values already on the grid survive exactly.
        var rng = new Random(7);
        var row = new float[172];
        for (int i = 0; i < row.Length; i++)
        {
            row[i] = E2M1.Decode(rng.Next(16)) * 0.125f;
        }

        row[0] = 6 * 0.125f; // pin every block's amax so the scale is 2^-3
        row[32] = row[64] = row[96] = row[128] = row[160] = -6 * 0.125f;
        var packed = new byte[6 * 16];
        var scales = new byte[6];
        Mxfp4Codec.QuantizeRow(row, packed, scales, ScaleRule.Floor);
        var back = new float[172];
        Mxfp4Codec.DequantizeRow(packed, scales, back);
        Assert.Equal(row, back);
        Assert.All(packed[(172 / 2)..], b => Assert.Equal(0, b)); // the padding is zero codes
    }

    [Fact]
    public void BFloat16AndHalfRowsQuantizeLikeTheirFloat32Values()
    {
        var rng = new Random(11);
        foreach (int length in new[] { 32, 64, 100, 4096 + 7 })
        {
            float[] row = RandomRow(rng, length, allowSpecial: false);
            var bf = new BFloat16[length];
            var half = new Half[length];
            for (int i = 0; i < length; i++)
            {
                bf[i] = BFloat16.FromSingle(row[i]);
                half[i] = (Half)row[i];
            }

            float[] bfAsFloat = bf.Select(b => b.ToSingle()).ToArray();
            float[] halfAsFloat = half.Select(h => (float)h).ToArray();
            int blocks = Mxfp4Codec.BlockCount(length);
            foreach ((Action<byte[], byte[]> quantize, float[] widened) in new (Action<byte[], byte[]>, float[])[]
            {
                ((p, s) => Mxfp4Codec.QuantizeRow(bf, p, s, ScaleRule.Even), bfAsFloat),
                ((p, s) => Mxfp4Codec.QuantizeRow(half, p, s, ScaleRule.Even), halfAsFloat),
            })
            {
                var p1 = new byte[blocks * 16];
                var s1 = new byte[blocks];
                quantize(p1, s1);
                var p2 = new byte[blocks * 16];
                var s2 = new byte[blocks];
                Mxfp4Codec.QuantizeRow(widened, p2, s2, ScaleRule.Even);
                Assert.Equal(s2, s1);
                Assert.Equal(p2, p1);
            }
        }
    }

    [Fact]
    public void NonFiniteBlockGetsNaNScaleAndOthersAreUnaffected()
    {
        var row = new float[64];
        row[3] = float.NaN;
        row[40] = 1.5f;
        var packed = new byte[32];
        var scales = new byte[2];
        Mxfp4Codec.QuantizeRow(row, packed, scales, ScaleRule.Floor);
        Assert.Equal(E8M0.NaN, scales[0]);
        Assert.Equal(E8M0.FromAmax(1.5f, ScaleRule.Floor), scales[1]);
        var back = new float[64];
        Mxfp4Codec.DequantizeRow(packed, scales, back);
        Assert.All(back[..32], v => Assert.True(float.IsNaN(v)));
        Assert.Equal(1.5f, back[40]);
    }

    [Fact]
    public void AllZeroBlockUsesScaleByteZero()
    {
        var packed = new byte[16];
        var scales = new byte[] { 99 };
        Mxfp4Codec.QuantizeRow(new float[32], packed, scales, ScaleRule.RoundUp);
        Assert.Equal(0, scales[0]);
        Assert.All(packed, b => Assert.Equal(0, b));
    }

    [Fact]
    public void RoundUpNeverClipsAndFloorClipsOnlyAboveSix()
    {
        var rng = new Random(5);
        for (int t = 0; t < 2000; t++)
        {
            float[] block = RandomRow(rng, 32, allowSpecial: false);
            float amax = block.Max(MathF.Abs);
            if (amax == 0)
            {
                continue;
            }

            Assert.True(amax <= 6 * E8M0.Decode(E8M0.FromAmax(amax, ScaleRule.RoundUp)));
            Assert.True(amax / E8M0.Decode(E8M0.FromAmax(amax, ScaleRule.Floor)) is >= 4 and < 8);
        }
    }

    [Fact]
    public void LlamaCppLayoutRoundTrips()
    {
        var rng = new Random(3);
        var packed = new byte[10 * 16];
        var scales = new byte[10];
        rng.NextBytes(packed);
        rng.NextBytes(scales);
        var ggml = new byte[10 * LlamaCppMxfp4Block.Size];
        LlamaCppMxfp4Block.FromInterleaved(packed, scales, ggml);
        var packed2 = new byte[packed.Length];
        var scales2 = new byte[scales.Length];
        LlamaCppMxfp4Block.ToInterleaved(ggml, packed2, scales2);
        Assert.Equal(packed, packed2);
        Assert.Equal(scales, scales2);

        // Element j of block 0 sits in qs[j % 16], low nibble for j < 16.
        for (int j = 0; j < 32; j++)
        {
            int ours = (packed[j / 2] >> (4 * (j & 1))) & 0xF;
            int theirs = (ggml[1 + (j % 16)] >> (j < 16 ? 0 : 4)) & 0xF;
            Assert.Equal(ours, theirs);
        }

        Assert.Throws<ArgumentException>(() => LlamaCppMxfp4Block.ToInterleaved(new byte[18], packed2, scales2));
    }

    [Fact]
    public void QuantizeMatrixIsRowByRow()
    {
        var rng = new Random(9);
        const int rows = 5, cols = 70;
        float[] m = RandomRow(rng, rows * cols, allowSpecial: false);
        int blocks = Mxfp4Codec.BlockCount(cols);
        var packed = new byte[rows * blocks * 16];
        var scales = new byte[rows * blocks];
        Mxfp4Codec.QuantizeMatrix(m, rows, cols, packed, scales, ScaleRule.Floor);
        for (int r = 0; r < rows; r++)
        {
            var p = new byte[blocks * 16];
            var s = new byte[blocks];
            Mxfp4Codec.QuantizeRow(m.AsSpan(r * cols, cols), p, s, ScaleRule.Floor);
            Assert.Equal(p, packed.AsSpan(r * blocks * 16, blocks * 16).ToArray());
            Assert.Equal(s, scales.AsSpan(r * blocks, blocks).ToArray());
        }
    }

    private static float[] RandomRow(Random rng, int length, bool allowSpecial = true)
    {
        var row = new float[length];
        double magnitude = Math.Pow(2, rng.Next(-30, 30));
        for (int i = 0; i < length; i++)
        {
            double v = (rng.NextDouble() * 2 - 1) * magnitude;
            int kind = rng.Next(100);
            if (kind < 5)
            {
                v = E2M1.Decode(rng.Next(16)) * Math.Pow(2, rng.Next(-4, 4)) * (rng.Next(2) == 0 ? 0.75 : 1.25); // exact ties
            }
            else if (kind < 8)
            {
                v *= 40; // outliers
            }
            else if (kind < 10)
            {
                v = 0;
            }
            else if (allowSpecial && kind == 10 && rng.Next(20) == 0)
            {
                v = rng.Next(3) switch { 0 => double.NaN, 1 => double.PositiveInfinity, _ => 1e-42 };
            }

            row[i] = (float)v;
        }

        return row;
    }
}
