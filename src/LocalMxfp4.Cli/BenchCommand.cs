using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Numerics;
using System.Runtime.InteropServices;
using LocalMxfp4.Engine.Contract;
using LocalMxfp4.Engine.Layers;
using LocalMxfp4.Engine.Loading;
using LocalMxfp4.Numerics.Mxfp4;

namespace LocalMxfp4.Cli;

/// <summary>
/// <c>lmx bench</c>: W4A4 matrix-vector and matrix-matrix throughput on LLaMA-3-8B shapes with random MXFP4 weights,
/// each compared with a plain read of the same bytes measured in the same run, and decode tokens/s of a model.
/// </summary>
internal static class BenchCommand
{
    private static readonly (int Rows, int Columns, string Name)[] Shapes =
    [
        (4096, 4096, "q/o_proj 4096×4096"),
        (1024, 4096, "k/v_proj 1024×4096"),
        (14336, 4096, "gate/up 14336×4096"),
        (4096, 14336, "down 4096×14336"),
    ];

    public static Command Create()
    {
        var threads = new Option<int>("--threads") { Description = "Worker threads (0 = one per core).", DefaultValueFactory = _ => 0 };
        var repeats = new Option<int>("--repeats") { Description = "Timed repetitions per measurement (the median is reported).", DefaultValueFactory = _ => 30 };
        var prefill = new Option<int>("--prefill-tokens") { Description = "Tokens of the matrix-matrix (prefill) measurement.", DefaultValueFactory = _ => 512 };
        var kernel = new Option<string?>("--kernel") { Description = "scalar | vector128 | avx2 | avx512 (default: the best this CPU has)." };
        var model = new Option<string?>("--model") { Description = "Also measure decode tokens/s of this model." };
        var decodeTokens = new Option<int>("--decode-tokens") { Description = "Tokens decoded for the model measurement.", DefaultValueFactory = _ => 64 };
        var backend = new Option<string>("--backend") { Description = "cpu | cuda (cuda: decode and prefill of a LLaMA-3-8B-shaped MXFP4 model on the GPU, see CudaBenchCommand).", DefaultValueFactory = _ => "cpu" };
        var command = new Command("bench", "Measure W4A4 kernel throughput on LLaMA-3-8B shapes and a model's decode speed.")
        {
            threads, repeats, prefill, kernel, model, decodeTokens, backend,
        };
        command.Subcommands.Add(Bench.BenchSynthCommand.Create());
        command.Subcommands.Add(Bench.BenchServeCommand.Create());
        command.SetAction(parse => parse.GetValue(backend) is "cuda" ? CudaBenchCommand.Run(
            parse.GetValue(prefill), parse.GetValue(decodeTokens), parse.GetValue(repeats), parse.GetValue(model)) : Run(
            parse.GetValue(threads), parse.GetValue(repeats), parse.GetValue(prefill), parse.GetValue(kernel),
            parse.GetValue(model), parse.GetValue(decodeTokens)));
        return command;
    }

    private static int Run(int threads, int repeats, int prefillTokens, string? kernelName, string? modelPath, int decodeTokens)
    {
        Mxfp4KernelKind kernel = kernelName is null ? Mxfp4Linear.BestKernel : Enum.Parse<Mxfp4KernelKind>(kernelName, ignoreCase: true);
        using var parallel = new ParallelRows(threads);
        var inv = CultureInfo.InvariantCulture;
        Console.WriteLine($"lmx bench — {Environment.ProcessorCount} logical CPUs, {parallel.Threads} threads, kernel {kernel}, {RuntimeInformation.FrameworkDescription}, {RuntimeInformation.OSDescription}");
        Console.WriteLine("Weights: random MXFP4 (17 bytes per 32 weights), rotated through copies totalling ≥ 256 MiB so every call streams from DRAM, not cache.");
        Console.WriteLine("Memory read: the same copies' bytes summed with the same threads in the same run; ratio = read time / GEMV time.");
        Console.WriteLine();
        Console.WriteLine($"{"shape",-22} {"weights",9} {"GEMV ms",9} {"GB/s",7} {"read ms",9} {"read GB/s",9} {"ratio",6} | {prefillTokens}-token GEMM: {"ms",8} {"GOP/s",7} {"tok/s",8}");
        var rng = new Random(1);
        foreach ((int rows, int columns, string name) in Shapes)
        {
            Mxfp4Matrix weights = RandomMatrix(rng, rows, columns);
            int copies = (int)Math.Max(1, (256L << 20) / weights.Bytes);
            var linears = new Mxfp4Linear[copies];
            var matrices = new Mxfp4Matrix[copies];
            for (int c = 0; c < copies; c++)
            {
                matrices[c] = c == 0 ? weights : new Mxfp4Matrix(rows, columns, (byte[])weights.Packed.Clone(), (byte[])weights.Scales.Clone());
                linears[c] = new Mxfp4Linear(matrices[c], null, ScaleRule.Floor, parallel, kernel);
            }

            float[] x = RandomVector(rng, columns);
            var y = new float[rows];
            int next = 0;
            double gemv = Median(repeats, () => linears[next++ % copies].Forward(x, y, 1));
            next = 0;
            double read = Median(repeats, () => ReadAll(linears[next++ % copies].PaddedWeightBytes, parallel, rows));
            double gb = weights.Bytes / 1e9;
            Mxfp4Linear linear = linears[0];

            float[] xs = RandomVector(rng, columns * prefillTokens);
            var ys = new float[rows * prefillTokens];
            double gemm = Median(Math.Max(3, repeats / 10), () => linear.Forward(xs, ys, prefillTokens));
            double ops = 2.0 * rows * columns * prefillTokens;
            Console.WriteLine(string.Create(inv,
                $"{name,-22} {weights.Bytes / 1048576.0,6:F1} MiB {gemv * 1e3,9:F3} {gb / gemv,7:F1} {read * 1e3,9:F3} {gb / read,9:F1} {read / gemv,6:P0} | {"",14}{gemm * 1e3,8:F1} {ops / gemm / 1e9,7:F1} {prefillTokens / gemm,8:F0}"));
        }

        if (modelPath is not null)
        {
            Console.WriteLine();
            MeasureDecode(modelPath, threads, decodeTokens);
        }

        return 0;
    }

    private static void MeasureDecode(string modelPath, int threads, int tokens)
    {
        using IInferenceEngine engine = EngineLoader.Load(modelPath, new EngineLoadOptions { Threads = threads });
        int context = Math.Min(engine.Config.MaxPositions, tokens + 2);
        using IInferenceSession session = engine.CreateSession(context);
        var logits = new float[engine.Config.VocabularySize];
        int token = engine.Config.BosTokenId ?? 1;
        session.Forward([token], logits);
        var clock = Stopwatch.StartNew();
        int produced = 0;
        for (; produced < tokens && session.Position < context; produced++)
        {
            token = LocalMxfp4.Engine.Sampling.Sampler.ArgMax(logits);
            session.Forward([token], logits);
        }

        clock.Stop();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"decode {modelPath}: {engine.Description.WeightFormat} weights / {engine.Description.ActivationFormat} activations, {produced} tokens in {clock.Elapsed.TotalMilliseconds:F0} ms = {produced / clock.Elapsed.TotalSeconds:F1} tok/s"));
    }

    private static double Median(int repeats, Action action)
    {
        for (int i = 0; i < 5; i++)
        {
            action(); // warm-up: JIT tiers, page faults, worker threads
        }
        var times = new double[Math.Max(1, repeats)];
        for (int i = 0; i < times.Length; i++)
        {
            long start = Stopwatch.GetTimestamp();
            action();
            times[i] = Stopwatch.GetElapsedTime(start).TotalSeconds;
        }

        Array.Sort(times);
        return times[times.Length / 2];
    }

    private static long _sink;

    /// <summary>Reads exactly the bytes the kernel streams (its padded nibble and scale planes), split the same way.</summary>
    private static void ReadAll((byte[] Packed, byte[] Scales) planes, ParallelRows parallel, int rows)
    {
        (byte[] packed, byte[] scales) = planes;
        long packedPerRow = packed.LongLength / rows, scalesPerRow = scales.LongLength / rows;
        parallel.For(rows, packedPerRow * 2, (start, end) =>
        {
            var acc = Vector<ulong>.Zero;
            ReadOnlySpan<Vector<ulong>> p = MemoryMarshal.Cast<byte, Vector<ulong>>(packed.AsSpan((int)(start * packedPerRow), (int)((end - start) * packedPerRow)));
            foreach (Vector<ulong> v in p)
            {
                acc ^= v;
            }

            ReadOnlySpan<Vector<ulong>> s = MemoryMarshal.Cast<byte, Vector<ulong>>(scales.AsSpan((int)(start * scalesPerRow), (int)((end - start) * scalesPerRow)));
            foreach (Vector<ulong> v in s)
            {
                acc ^= v;
            }

            Interlocked.Add(ref _sink, (long)Vector.Sum(acc));
        });
    }

    private static Mxfp4Matrix RandomMatrix(Random rng, int rows, int columns)
    {
        int blocks = Mxfp4Codec.BlockCount(columns);
        var packed = new byte[(long)rows * blocks * 16];
        var scales = new byte[(long)rows * blocks];
        rng.NextBytes(packed);
        for (int i = 0; i < scales.Length; i++)
        {
            scales[i] = (byte)rng.Next(118, 126); // plausible weight scales, 2^-9 … 2^-2
        }

        return new Mxfp4Matrix(rows, columns, packed, scales);
    }

    private static float[] RandomVector(Random rng, int count)
    {
        var x = new float[count];
        for (int i = 0; i < count; i++)
        {
            x[i] = (float)(rng.NextDouble() - 0.5);
        }

        return x;
    }
}
