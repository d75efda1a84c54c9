using System.Diagnostics;
using System.Globalization;
using LocalMxfp4.Models.Configuration;
using LocalMxfp4.Models.Quantized;
using LocalMxfp4.Numerics.Mxfp4;

namespace LocalMxfp4.Cuda;

/// <summary>Settings of <see cref="CudaBenchmark.Run"/>.</summary>
public sealed record CudaBenchmarkOptions
{
    /// <summary>Tokens decoded per timed decode run (batch 1, greedy on the device, one graph per token).</summary>
    public int DecodeTokens { get; init; } = 256;

    /// <summary>Prompt length of the prefill measurement.</summary>
    public int PrefillTokens { get; init; } = 2048;

    /// <summary>Timed repetitions (the median is reported).</summary>
    public int Repeats { get; init; } = 5;

    /// <summary>Decoder layers of the synthetic model (32 = LLaMA-3-8B).</summary>
    public int Layers { get; init; } = 32;

    /// <summary>KV cache precision.</summary>
    public CudaKvCacheFormat KvCache { get; init; } = CudaKvCacheFormat.BFloat16;

    /// <summary>A quantized model to measure instead of the synthetic LLaMA-3-8B shape (null: synthetic).</summary>
    public string? ModelPath { get; init; }

    /// <summary>Programmatic dependent launch between kernels (Hopper+).</summary>
    public bool ProgrammaticLaunch { get; init; } = true;

    /// <summary>Seed of the synthetic weights and the prompt.</summary>
    public int Seed { get; init; } = 1;
}

/// <summary>
/// <c>lmx bench --backend cuda</c>: decode tokens/s at batch 1 and prefill tokens/s of a LLaMA-3-8B-shaped model with
/// random MXFP4 weights generated in memory (nothing read from disk), the weight-streaming roofline measured in the same
/// run (a device-to-device copy of as many bytes as one decode step streams), and a per-kernel profile of a decode step.
/// </summary>
public static class CudaBenchmark
{
    /// <summary>Runs the benchmark and writes a report to <paramref name="output"/>.</summary>
    public static void Run(CudaBenchmarkOptions options, TextWriter output)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(output);
        var inv = CultureInfo.InvariantCulture;
        var clock = Stopwatch.StartNew();
        QuantizedModel model = options.ModelPath is null ? SyntheticLlama3(options.Layers, options.Seed) : QuantizedModelReader.Read(options.ModelPath);
        double build = clock.Elapsed.TotalSeconds;
        LlamaConfig c = model.Config;
        int promptLength = Math.Max(options.PrefillTokens, 16);
        int context = promptLength + options.DecodeTokens + 16;
        clock.Restart();
        using var engine = new CudaEngine(model, new CudaEngineOptions { KvCache = options.KvCache, MaxBatchTokens = Math.Max(1, options.PrefillTokens), ProgrammaticLaunch = options.ProgrammaticLaunch });
        double upload = clock.Elapsed.TotalSeconds;
        model = null!; // the host copy is no longer needed
        GC.Collect();
        CudaContext ctx = engine.Context;
        output.WriteLine(string.Create(inv, $"lmx bench --backend cuda — {ctx.Name}, compute {ctx.ComputeCapability}, {ctx.Multiprocessors} SMs, {ctx.TotalMemory / (1L << 30)} GiB, driver CUDA {ctx.DriverVersion}; kernels {engine.Kernels.Path}"));
        output.WriteLine(string.Create(inv,
            $"model: {(options.ModelPath ?? "synthetic LLaMA-3-8B shape, random MXFP4 weights")} — {c.LayerCount} layers, hidden {c.HiddenSize}, MLP {c.IntermediateSize}, heads {c.HeadCount}/{c.KeyValueHeadCount}×{c.HeadDim}, vocab {c.VocabularySize}; built in {build:F1} s, uploaded in {upload:F1} s; KV cache {options.KvCache}; programmatic launch {(options.ProgrammaticLaunch && ctx.ComputeCapability.Major >= 9 ? "on" : "off")}; shared-memory carveout {engine.Kernels.Carveout}"));
        long bytes = engine.WeightBytesPerToken;
        output.WriteLine(string.Create(inv, $"bytes streamed per decode step: {bytes / 1e9:F3} GB (MXFP4 linears {(bytes - engine.LmHead.Bytes) / 1e9:F3} GB + bf16 lm_head {engine.LmHead.Bytes / 1e9:F3} GB)"));
        output.WriteLine();

        using CudaSession session = engine.CreateCudaSession(context);
        output.WriteLine(string.Create(inv, $"kernels: decode GEMV {session.GemvKernel} (FP8 tensor-core GEMV {(engine.Kernels.HasTensorCoreGemv ? "available" : "not available")}), prefill GEMM {session.PrefillKernel}"));
        output.WriteLine();
        var rng = new Random(options.Seed);
        int[] prompt = Enumerable.Range(0, promptLength).Select(_ => rng.Next(c.VocabularySize)).ToArray();
        using CudaEvent start = CudaEvent.Create(ctx), end = CudaEvent.Create(ctx);

        double TimeMs(Action action)
        {
            start.Record(session.Stream);
            action();
            end.Record(session.Stream);
            end.Synchronize();
            return CudaEvent.ElapsedMilliseconds(start, end);
        }

        // Roofline: copy the bytes of one decode step device to device (read + write = 2 × bytes moved).
        double copyMs;
        using (DeviceBuffer src = DeviceBuffer.Allocate(ctx, bytes), dst = DeviceBuffer.Allocate(ctx, bytes))
        {
            session.Stream.Fill8(src.Pointer, 0x5A, bytes);
            for (int i = 0; i < 3; i++)
            {
                TimeMs(() => session.Stream.CopyDevice(dst.Pointer, src.Pointer, bytes));
            }

            copyMs = Median(Enumerable.Range(0, Math.Max(5, options.Repeats * 2)).Select(_ => TimeMs(() => session.Stream.CopyDevice(dst.Pointer, src.Pointer, bytes))));
        }

        double copyBandwidth = 2.0 * bytes / (copyMs / 1e3);
        double roofline = copyBandwidth / bytes;

        // Prefill.
        double prefillMs = 0;
        if (options.PrefillTokens > 0)
        {
            session.Rewind(0);
            int[] prefill = prompt[..options.PrefillTokens];
            session.ForwardToDevice(prefill); // warm-up
            prefillMs = Median(Enumerable.Range(0, options.Repeats).Select(_ =>
            {
                session.Rewind(0);
                return TimeMs(() => session.ForwardToDevice(prefill));
            }));
        }

        // Decode after a short prompt (weights dominate) and after the long prompt (adds attention over the cache).
        var generated = new int[options.DecodeTokens];
        double DecodeMs(int promptTokens)
        {
            session.Rewind(0);
            session.ForwardToDevice(prompt.AsSpan(0, promptTokens));
            int atPosition = session.Position;
            session.DecodeGreedy(prompt[0], generated); // warm-up (and graph capture)
            return Median(Enumerable.Range(0, options.Repeats).Select(_ =>
            {
                session.Rewind(atPosition);
                return TimeMs(() => session.DecodeGreedy(prompt[0], generated));
            }));
        }

        const int shortPrompt = 16;
        // The decode GEMV kernels this GPU has, each measured on the same upload (the default last, so it stays selected).
        CudaGemvKernel chosen = session.GemvKernel;
        var otherKernels = new List<(CudaGemvKernel Kernel, double Ms)>();
        foreach (CudaGemvKernel kernel in new[] { CudaGemvKernel.Dp4a, CudaGemvKernel.TensorCoreFp8 })
        {
            if (kernel != chosen && (kernel != CudaGemvKernel.TensorCoreFp8 || engine.Kernels.HasTensorCoreGemv))
            {
                session.GemvKernel = kernel;
                otherKernels.Add((kernel, DecodeMs(shortPrompt)));
            }
        }

        session.GemvKernel = chosen;
        if (chosen == CudaGemvKernel.Dp4a)
        {
            // The dp4a GEMV before split-K (one persistent kernel for every shape), for comparison in the same run.
            engine.Kernels.Dp4aSplitEnabled = false;
            session.ResetDecodeGraph();
            otherKernels.Add((CudaGemvKernel.Dp4a, -DecodeMs(shortPrompt)));
            engine.Kernels.Dp4aSplitEnabled = true;
            session.ResetDecodeGraph();
        }

        double decodeShortMs = DecodeMs(shortPrompt);
        double decodeLongMs = options.PrefillTokens > shortPrompt ? DecodeMs(options.PrefillTokens) : double.NaN;
        double decodeTps = options.DecodeTokens / (decodeShortMs / 1e3);
        double decodeLongTps = options.DecodeTokens / (decodeLongMs / 1e3);

        output.WriteLine("| measurement | result |");
        output.WriteLine("|---|---|");
        output.WriteLine(string.Create(inv, $"| roofline: device-to-device copy of {bytes / 1e9:F3} GB | {copyMs:F3} ms → {copyBandwidth / 1e12:F3} TB/s (read + write) → {roofline:F1} tok/s bound |"));
        output.WriteLine(string.Create(inv, $"| decode, batch 1, positions {shortPrompt}…{shortPrompt + options.DecodeTokens} ({options.DecodeTokens} tokens, graph per token, greedy on GPU), GEMV {chosen} | {decodeShortMs / options.DecodeTokens:F3} ms/token = **{decodeTps:F1} tok/s = {decodeTps / roofline:P1} of roofline** ({bytes / (decodeShortMs / 1e3 / options.DecodeTokens) / 1e12:F3} TB/s of weights) |"));
        foreach ((CudaGemvKernel kernel, double signedMs) in otherKernels)
        {
            double ms = Math.Abs(signedMs);
            double tps = options.DecodeTokens / (ms / 1e3);
            string label = signedMs < 0 ? $"{kernel}, persistent kernel only (no split-K)" : kernel.ToString();
            output.WriteLine(string.Create(inv, $"| same, GEMV {label} | {ms / options.DecodeTokens:F3} ms/token = {tps:F1} tok/s = {tps / roofline:P1} of roofline |"));
        }

        if (!double.IsNaN(decodeLongMs))
        {
            output.WriteLine(string.Create(inv, $"| decode, batch 1, positions {options.PrefillTokens}…{options.PrefillTokens + options.DecodeTokens} | {decodeLongMs / options.DecodeTokens:F3} ms/token = {decodeLongTps:F1} tok/s = {decodeLongTps / roofline:P1} of roofline |"));
        }

        if (options.PrefillTokens > 0)
        {
            output.WriteLine(string.Create(inv, $"| prefill, {options.PrefillTokens} tokens in one pass | {prefillMs:F1} ms = **{options.PrefillTokens / (prefillMs / 1e3):F0} tok/s** |"));
        }

        output.WriteLine();
        GemvTable(engine, session, copyBandwidth, options.Repeats, output);

        // Profile of one decode step after the short prompt.
        session.Rewind(0);
        session.ForwardToDevice(prompt.AsSpan(0, shortPrompt));
        (IReadOnlyList<(string Kind, int Launches, double Microseconds)> kinds, double stepUs) = session.ProfileDecodeStep(prompt[0]);
        double kernelUs = kinds.Sum(k => k.Microseconds);
        output.WriteLine(string.Create(inv, $"Decode-step profile at position {shortPrompt} (graph with an event after every kernel; GPU time between events):"));
        output.WriteLine();
        output.WriteLine("| kernel kind | launches | µs / token | share | weight GB/s |");
        output.WriteLine("|---|---|---|---|---|");
        var weightBytes = new Dictionary<string, long>
        {
            ["linear q|k|v"] = engine.Layers.Sum(l => l.Qkv.Bytes),
            ["linear o"] = engine.Layers.Sum(l => l.Output.Bytes),
            ["linear gate|up"] = engine.Layers.Sum(l => l.GateUp.Bytes),
            ["linear down"] = engine.Layers.Sum(l => l.Down.Bytes),
            ["lm_head"] = engine.LmHead.Bytes,
        };
        foreach ((string kind, int launches, double us) in kinds)
        {
            string bw = weightBytes.TryGetValue(kind, out long b) ? string.Create(inv, $"{b / (us / 1e6) / 1e9:F0}") : "";
            output.WriteLine(string.Create(inv, $"| {kind} | {launches} | {us:F1} | {us / kernelUs:P1} | {bw} |"));
        }

        output.WriteLine(string.Create(inv, $"| **sum of kernels (with event nodes)** | {kinds.Sum(k => k.Launches)} | {kernelUs:F1} | | {bytes / (kernelUs / 1e6) / 1e9:F0} |"));
        output.WriteLine(string.Create(inv, $"| **decode step as one graph (no events)** | {session.DecodeGraphNodes} nodes | {stepUs:F1} | | {bytes / (stepUs / 1e6) / 1e9:F0} |"));
        output.WriteLine(string.Create(inv, $"| roofline step (copy time / 2) | | {copyMs * 1e3 / 2:F1} | | {copyBandwidth / 2e9:F0} |"));
    }

    /// <summary>
    /// Each decode GEMV kernel (and the FP8 one at every split-K) on each linear of the model, one token: launches cycle
    /// through all layers' matrices so every call streams its weights from DRAM; µs per call and weight GB/s against the
    /// copy bandwidth measured in the same run.
    /// </summary>
    private static void GemvTable(CudaEngine engine, CudaSession session, double copyBandwidth, int repeats, TextWriter output)
    {
        var inv = CultureInfo.InvariantCulture;
        CudaKernels k = engine.Kernels;
        CudaContext ctx = engine.Context;
        CudaStream stream = session.Stream;
        var shapes = new (string Name, Func<DeviceLayer, DeviceLinear> Pick)[]
        {
            ("q|k|v", l => l.Qkv), ("o", l => l.Output), ("gate|up", l => l.GateUp), ("down", l => l.Down),
        };
        var variants = new List<(string Name, CudaGemvKernel Kernel, int Split)>
        {
            ("dp4a (auto split)", CudaGemvKernel.Dp4a, 0), ("dp4a persistent", CudaGemvKernel.Dp4a, 1),
            ("dp4a split 2", CudaGemvKernel.Dp4a, 2), ("dp4a split 4", CudaGemvKernel.Dp4a, 4), ("dp4a split 8", CudaGemvKernel.Dp4a, 8),
        };
        if (k.HasTensorCoreGemv)
        {
            variants.Add(("fp8 (auto split)", CudaGemvKernel.TensorCoreFp8, 0));
            foreach (int split in new[] { 1, 2, 4, 8 })
            {
                variants.Add(($"fp8 split {split}", CudaGemvKernel.TensorCoreFp8, split));
            }
        }

        int pbMax = engine.Layers.Max(l => Math.Max(l.Down.PaddedBlocks, l.GateUp.PaddedBlocks));
        int rowsMax = engine.Layers.Max(l => Math.Max(l.GateUp.Rows, l.Qkv.Rows));
        using DeviceBuffer codes = DeviceBuffer.Allocate(ctx, (long)pbMax * 32), exps = DeviceBuffer.Allocate(ctx, pbMax), y = DeviceBuffer.Allocate(ctx, (long)rowsMax * 4);
        stream.Fill8(codes.Pointer, 0x03, (long)pbMax * 32);
        stream.Fill8(exps.Pointer, 0x7E, pbMax);
        using CudaEvent start = CudaEvent.Create(ctx), end = CudaEvent.Create(ctx);
        output.WriteLine(string.Create(inv, $"Decode GEMV kernels, one token, µs per call (weight GB/s; % of the {copyBandwidth / 1e9:F0} GB/s the same-run copy moves, read + write), every call L2-cold:"));
        output.WriteLine();
        output.WriteLine("| kernel | " + string.Join(" | ", shapes.Select(sh =>
        {
            DeviceLinear w = sh.Pick(engine.Layers[0]);
            return string.Create(inv, $"{sh.Name} {w.Rows}×{w.Columns} (auto split dp4a {k.Dp4aSplitK(w.Rows, w.PaddedBlocks)}, fp8 {k.GemvSplitK(w.Rows, w.PaddedBlocks)})");
        })) + " |");
        output.WriteLine("|---|" + string.Concat(Enumerable.Repeat("---|", shapes.Length)));
        foreach ((string name, CudaGemvKernel kernel, int split) in variants)
        {
            var cells = new List<string>();
            foreach ((string _, Func<DeviceLayer, DeviceLinear> pick) in shapes)
            {
                void Pass()
                {
                    foreach (DeviceLayer layer in engine.Layers)
                    {
                        DeviceLinear w = pick(layer);
                        k.LaunchGemv(stream, kernel, w.Packed.Pointer, w.Scales.Pointer, w.Rows, w.PaddedBlocks, codes.Pointer, exps.Pointer, y.Pointer, false, split);
                    }
                }

                Pass(); // warm-up
                var times = new List<double>();
                for (int r = 0; r < Math.Max(5, repeats); r++)
                {
                    start.Record(stream);
                    Pass();
                    end.Record(stream);
                    end.Synchronize();
                    times.Add(CudaEvent.ElapsedMilliseconds(start, end) * 1000.0 / engine.Layers.Count);
                }

                double us = Median(times);
                long b = pick(engine.Layers[0]).Bytes;
                double gbs = b / (us / 1e6) / 1e9;
                cells.Add(string.Create(inv, $"{us:F1} ({gbs:F0}; {gbs * 1e9 / copyBandwidth:P0})"));
            }

            output.WriteLine($"| {name} | {string.Join(" | ", cells)} |");
        }

        output.WriteLine();
    }

    /// <summary>
    /// A LLaMA-3-8B-shaped quantized model with random MXFP4 weights (scales 2^-9…2^-6), shared 32×32 Hadamard transforms
    /// on the q/k/v, gate/up and down inputs and per-block transforms on the o_proj input (as DuQuant++ models have),
    /// bf16-exact random embedding and lm_head. <paramref name="layers"/> = 32 is the real depth.
    /// </summary>
    public static QuantizedModel SyntheticLlama3(int layers = 32, int seed = 1, int hidden = 4096, int intermediate = 14336, int heads = 32, int kvHeads = 8, int vocab = 128256)
    {
        int d = hidden / heads;
        var config = new LlamaConfig
        {
            HiddenSize = hidden,
            IntermediateSize = intermediate,
            LayerCount = layers,
            HeadCount = heads,
            KeyValueHeadCount = kvHeads,
            HeadDim = d,
            VocabularySize = vocab,
            MaxPositions = 8192,
            RmsNormEpsilon = 1e-5,
            RopeTheta = 500000,
            RopeScaling = new RopeScaling(8, 1, 4, 8192),
            TieWordEmbeddings = false,
            BosTokenId = 128000,
        };
        float[] hadamard = Hadamard32();
        var qkvT = new InputTransform(hadamard, hidden / 32);
        var downT = new InputTransform(hadamard, intermediate / 32);
        var layerList = new QuantizedLayer[layers];
        for (int l = 0; l < layers; l++)
        {
            int s = seed * 1000 + l * 16;
            var oMatrices = new float[hidden / 32 * 1024];
            var rng = new Random(s);
            for (int b = 0; b < hidden / 32; b++)
            {
                for (int i = 0; i < 32; i++)
                {
                    float scale = 0.5f + (float)rng.NextDouble();
                    for (int j = 0; j < 32; j++)
                    {
                        oMatrices[(b * 1024) + (i * 32) + j] = hadamard[(i * 32) + j] * scale;
                    }
                }
            }

            layerList[l] = new QuantizedLayer(
                Ones(hidden),
                RandomMatrix(heads * d, hidden, s + 1),
                RandomMatrix(kvHeads * d, hidden, s + 2),
                RandomMatrix(kvHeads * d, hidden, s + 3),
                RandomMatrix(hidden, heads * d, s + 4),
                Ones(hidden),
                RandomMatrix(intermediate, hidden, s + 5),
                RandomMatrix(intermediate, hidden, s + 6),
                RandomMatrix(hidden, intermediate, s + 7),
                qkvT,
                new InputTransform(oMatrices, hidden / 32),
                qkvT,
                downT);
        }

        return new QuantizedModel(config, new QuantizationConfig { Method = TransformMethod.DuQuant, ActivationScaleRule = ScaleRule.Floor },
            RandomBf16(vocab * hidden, seed + 11), layerList, Ones(hidden), RandomBf16(vocab * hidden, seed + 12));
    }

    private static float[] Ones(int n)
    {
        var a = new float[n];
        Array.Fill(a, 1f);
        return a;
    }

    private static float[] Hadamard32()
    {
        var h = new float[1024];
        float norm = 1f / MathF.Sqrt(32);
        for (int i = 0; i < 32; i++)
        {
            for (int j = 0; j < 32; j++)
            {
                h[(i * 32) + j] = (System.Numerics.BitOperations.PopCount((uint)(i & j)) & 1) == 0 ? norm : -norm;
            }
        }

        return h;
    }

    private static Mxfp4Matrix RandomMatrix(int rows, int columns, int seed)
    {
        int blocks = columns / 32;
        var packed = new byte[(long)rows * blocks * 16];
        var scales = new byte[(long)rows * blocks];
        FillRandom(packed, (ulong)seed * 0x9E3779B97F4A7C15UL + 1);
        FillRandom(scales, (ulong)seed * 0xC2B2AE3D27D4EB4FUL + 7);
        for (int i = 0; i < scales.Length; i++)
        {
            scales[i] = (byte)(118 + (scales[i] & 3)); // 2^-9 … 2^-6
        }

        return new Mxfp4Matrix(rows, columns, packed, scales);
    }

    private static float[] RandomBf16(int count, int seed)
    {
        var values = new float[count];
        Parallel.For(0, (count + 65535) / 65536, chunk =>
        {
            ulong state = ((ulong)seed * 0x9E3779B97F4A7C15UL) ^ ((ulong)chunk * 0xD1B54A32D192ED03UL) | 1;
            int startIndex = chunk * 65536, endIndex = Math.Min(count, startIndex + 65536);
            for (int i = startIndex; i < endIndex; i++)
            {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                uint sign = (uint)(state >> 63) << 31;
                uint exponent = 118u + (uint)((state >> 20) & 3);
                uint mantissa = (uint)(state >> 32) & 0x7Fu;
                values[i] = BitConverter.UInt32BitsToSingle(sign | (exponent << 23) | (mantissa << 16));
            }
        });
        return values;
    }

    private static void FillRandom(byte[] data, ulong seed)
    {
        int chunks = (data.Length + (1 << 20) - 1) >> 20;
        Parallel.For(0, chunks, chunk =>
        {
            ulong state = (seed ^ ((ulong)chunk * 0xD1B54A32D192ED03UL)) | 1;
            int startIndex = chunk << 20, endIndex = Math.Min(data.Length, startIndex + (1 << 20));
            for (int i = startIndex; i < endIndex; i += 8)
            {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ulong v = state;
                for (int k = 0; k < 8 && i + k < endIndex; k++)
                {
                    data[i + k] = (byte)(v >> (8 * k));
                }
            }
        });
    }

    private static double Median(IEnumerable<double> values)
    {
        double[] sorted = values.OrderBy(v => v).ToArray();
        return sorted[sorted.Length / 2];
    }
}
