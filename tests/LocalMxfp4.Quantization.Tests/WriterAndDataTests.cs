using LocalMxfp4.Engine.Evaluation;
using LocalMxfp4.Models.Checkpoint;
using LocalMxfp4.Models.Quantized;
using LocalMxfp4.Numerics.Mxfp4;
using LocalMxfp4.Quantization.Gptq;
using LocalMxfp4.Tokenization;

namespace LocalMxfp4.Quantization.Tests;

public class WriterAndDataTests
{
    [Fact]
    public void InterruptedWriteLeavesNothingAndKeepsTheOldModel()
    {
        string parent = QuantizerFixtures.TempDirectory("lmx-atomic");
        try
        {
            string output = Path.Combine(parent, "model");
            Assert.Throws<InvalidOperationException>(() => ModelDirectoryWriter.Write(output, false, temp =>
            {
                File.WriteAllText(Path.Combine(temp, "config.json"), "{}");
                throw new InvalidOperationException("disk full");
            }));
            Assert.False(Directory.Exists(output));
            Assert.Empty(Directory.GetFileSystemEntries(parent));

            ModelDirectoryWriter.Write(output, false, temp => File.WriteAllText(Path.Combine(temp, "a.txt"), "v1"));
            Assert.Throws<IOException>(() => ModelDirectoryWriter.Write(output, false, temp => File.WriteAllText(Path.Combine(temp, "a.txt"), "v2")));
            Assert.Throws<InvalidOperationException>(() => ModelDirectoryWriter.Write(output, true, _ => throw new InvalidOperationException("crash")));
            Assert.Equal("v1", File.ReadAllText(Path.Combine(output, "a.txt")));
            ModelDirectoryWriter.Write(output, true, temp => File.WriteAllText(Path.Combine(temp, "a.txt"), "v2"));
            Assert.Equal("v2", File.ReadAllText(Path.Combine(output, "a.txt")));
            Assert.Single(Directory.GetFileSystemEntries(parent));
        }
        finally
        {
            Directory.Delete(parent, true);
        }
    }

    [Fact]
    public void ExponentSearchNeverIncreasesTheBlockError()
    {
        var rng = new Random(4);
        const int rows = 20, cols = 256;
        var w = new float[rows * cols];
        for (int i = 0; i < w.Length; i++)
        {
            w[i] = (float)((rng.NextDouble() - 0.5) * (rng.Next(10) == 0 ? 8 : 1));
        }

        float[] rule = WeightQuantizer.Quantize(w, rows, cols, ScaleRule.Floor, WeightScaleMode.SameAsActivations).Dequantize();
        Mxfp4Matrix searched = WeightQuantizer.Quantize(w, rows, cols, ScaleRule.Floor, WeightScaleMode.Search);
        float[] s = searched.Dequantize();
        int better = 0;
        for (int block = 0; block < w.Length / 32; block++)
        {
            double e1 = 0, e2 = 0;
            for (int i = block * 32; i < (block + 1) * 32; i++)
            {
                e1 += Math.Pow(w[i] - rule[i], 2);
                e2 += Math.Pow(w[i] - s[i], 2);
            }

            Assert.True(e2 <= e1 + 1e-12);
            better += e2 < e1 ? 1 : 0;
        }

        Assert.True(better > 0);
        Assert.DoesNotContain(E8M0.NaN, searched.Scales);
    }

    [Fact]
    public void GptqBeatsRoundToNearestOnTheOutputError()
    {
        var rng = new Random(8);
        const int rows = 16, width = 96, samples = 400;
        var x = new float[samples * width];
        for (int i = 0; i < x.Length; i++)
        {
            // Correlated inputs: GPTQ's error feedback has something to exploit.
            x[i] = (float)(Transforms.OrthogonalMatrices.Gaussian(rng) + (i % width > 0 ? 0.8 * x[i - 1] : 0));
        }

        var w = new float[rows * width];
        for (int i = 0; i < w.Length; i++)
        {
            w[i] = (float)(Transforms.OrthogonalMatrices.Gaussian(rng) * 0.1);
        }

        var h = new HessianAccumulator(width);
        h.Add(x, samples);
        float[] gptq = GptqQuantizer.Quantize(w, rows, width, h, ScaleRule.Floor).Dequantize();
        Mxfp4Matrix rtnMatrix = Mxfp4Matrix.Quantize(w, rows, width, ScaleRule.Floor);
        Assert.Equal(rtnMatrix.Scales, GptqQuantizer.Quantize(w, rows, width, h, ScaleRule.Floor).Scales); // static scales
        double OutputError(float[] q)
        {
            double sum = 0;
            for (int t = 0; t < samples; t++)
            {
                for (int r = 0; r < rows; r++)
                {
                    double d = 0;
                    for (int i = 0; i < width; i++)
                    {
                        d += (w[(r * width) + i] - q[(r * width) + i]) * x[(t * width) + i];
                    }

                    sum += d * d;
                }
            }

            return sum;
        }

        double rtnError = OutputError(rtnMatrix.Dequantize()), gptqError = OutputError(gptq);
        Assert.True(gptqError < 0.8 * rtnError, $"GPTQ {gptqError:G4} vs RTN {rtnError:G4}");
    }

    [Fact]
    public void CholeskyOfTheInverseReconstructsIt()
    {
        double[] h = [4, 2, 0.6, 2, 5, 1, 0.6, 1, 3];
        double[] u = GptqQuantizer.UpperCholeskyOfInverse(h, 3);
        // Uᵀ U · H = I
        for (int i = 0; i < 3; i++)
        {
            for (int j = 0; j < 3; j++)
            {
                double v = 0;
                for (int k = 0; k < 3; k++)
                {
                    double inv = 0;
                    for (int m = 0; m < 3; m++)
                    {
                        inv += u[(m * 3) + i] * u[(m * 3) + k];
                    }

                    v += inv * h[(k * 3) + j];
                }

                Assert.Equal(i == j ? 1 : 0, v, 10);
            }
        }
    }

    [Fact]
    public void TextCorpusReadsJsonlDocumentsAndPlainText()
    {
        string dir = QuantizerFixtures.TempDirectory("lmx-text");
        try
        {
            string jsonl = Path.Combine(dir, "a.jsonl");
            File.WriteAllText(jsonl, "{\"text\": \"one\"}\n\n{\"text\": \"two\", \"url\": \"x\"}\n");
            Assert.Equal(["one", "two"], TextCorpus.LoadDocuments(jsonl));
            File.WriteAllText(jsonl, "{\"text\": \"one\"}\n{\"body\": 3}\n");
            var e = Assert.Throws<InvalidDataException>(() => TextCorpus.LoadDocuments(jsonl));
            Assert.Contains("a.jsonl:2", e.Message);

            string docs = Path.Combine(dir, "b.txt");
            File.WriteAllText(docs, "Story one.\n<|endoftext|>\nStory two.\n<|endoftext|>\n");
            Assert.Equal(["Story one.", "Story two."], TextCorpus.LoadDocuments(docs));
            Assert.Throws<FileNotFoundException>(() => TextCorpus.LoadDocuments(Path.Combine(dir, "missing.txt")));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void CalibrationWindowsAreSeededAndInsideTheStream()
    {
        LlmTokenizer tokenizer = LlmTokenizer.Load(QuantizerFixtures.Stories);
        IReadOnlyList<string> docs = TextCorpus.LoadDocuments(QuantizerFixtures.Calibration);
        int[] stream = TextCorpus.TokenStream(docs, tokenizer, 1, 5000);
        Assert.InRange(stream.Length, 5000, 20000);
        Assert.Equal(1, stream[0]);
        int[][] a = TextCorpus.SampleWindows(stream, 6, 100, 2), b = TextCorpus.SampleWindows(stream, 6, 100, 2);
        Assert.Equal(a, b);
        Assert.NotEqual(a, TextCorpus.SampleWindows(stream, 6, 100, 3));
        Assert.All(a, w => Assert.Equal(100, w.Length));
        Assert.Throws<ArgumentException>(() => TextCorpus.SampleWindows(stream[..50], 1, 100, 2));
    }
}
