using LocalMxfp4.Cuda;
using LocalMxfp4.Engine.Contract;
using LocalMxfp4.Engine.Loading;
using LocalMxfp4.Engine.Sampling;
using LocalMxfp4.Models.Quantized;
using LocalMxfp4.Quantization;
using LocalMxfp4.Testing;
using LocalMxfp4.TestSupport;

namespace LocalMxfp4.Cuda.Tests;

/// <summary>
/// Quantized test models, written by the quantizer to temporary directories once per run: stories260K under DuQuant++
/// (smoothing, rotations, per-block o_proj transforms; calibrated on generated text, so nothing outside the repository is
/// needed) and a LLaMA-3-shaped random checkpoint (GQA 4:1, head_dim 128, llama3 RoPE scaling, the 128,256-token
/// vocabulary, an MLP width that is not a whole number of blocks) under the Hadamard baseline.
/// </summary>
internal static class QuantizedFixtures
{
    private static readonly Lazy<string> StoriesPath = new(() =>
    {
        string dir = Directory.CreateTempSubdirectory("lmx-cuda-test").FullName;
        string calibration = Path.Combine(dir, "calibration.jsonl");
        var rng = new Random(7);
        string[] words = ["Once", "upon", "a", "time", "there", "was", "a", "little", "girl", "named", "Lily", "she", "liked", "to", "play", "with", "her", "dog", "in", "the", "park", "one", "day", "they", "saw", "big", "red", "ball", "and", "were", "happy", "."];
        File.WriteAllLines(calibration, Enumerable.Range(0, 24).Select(_ =>
            "{\"text\": \"" + string.Join(' ', Enumerable.Range(0, 120).Select(_ => words[rng.Next(words.Length)])) + "\"}"));
        string output = Path.Combine(dir, "stories-duquant");
        new ModelQuantizer(new QuantizerOptions
        {
            Method = TransformMethod.DuQuant,
            CalibrationFile = calibration,
            CalibrationSamples = 4,
            CalibrationSequenceLength = 96,
            RotationSteps = 16,
            Threads = 2,
        }).Run(Path.Combine(SharedData.RepositoryRoot, "models", "stories260K"), output);
        return output;
    });

    private static readonly Lazy<string> Llama3Path = new(() =>
    {
        string source = SyntheticLlamaCheckpoint.Create(new SyntheticLlamaSpec
        {
            Hidden = 512,
            Intermediate = 1400,
            Layers = 2,
            Heads = 4,
            KeyValueHeads = 1,
            MaxPositions = 512,
            WithLlama3Tokenizer = false,
            Sharded = false,
        });
        string output = Path.Combine(Directory.CreateTempSubdirectory("lmx-cuda-test").FullName, "llama3-hadamard");
        new ModelQuantizer(new QuantizerOptions { Method = TransformMethod.Hadamard, Threads = 2 }).Run(source, output);
        return output;
    });

    public static string Stories => StoriesPath.Value;

    public static string Llama3 => Llama3Path.Value;

    public static string Get(string name) => name == "stories260K" ? Stories : Llama3;
}

/// <summary>Whole models on the GPU against the CPU W4A4 engine.</summary>
public sealed class ModelTests
{
    private const double Tolerance = 1e-3;

    public static TheoryData<string> Models() => new() { "stories260K", "llama3-shaped" };

    /// <summary>Prefill (in slices), graph decode steps and ForwardAll logits equal the CPU W4A4 engine's within 1e-3 (float32 KV cache).</summary>
    [Theory]
    [MemberData(nameof(Models))]
    public void LogitsMatchCpuEngine(string name)
    {
        Gpu.Require();
        string path = QuantizedFixtures.Get(name);
        using var cpu = QuantizedModelLoader.LoadEngine(path, threads: 2);
        using var gpu = new CudaEngine(QuantizedModelReader.Read(path), new CudaEngineOptions { KvCache = CudaKvCacheFormat.Float32, MaxBatchTokens = 16 });
        Assert.True(gpu.HeadIsExact);
        int vocab = cpu.Config.VocabularySize;
        var rng = new Random(Environment.TickCount);
        int[] prompt = Enumerable.Range(0, 40).Select(_ => rng.Next(vocab)).ToArray();

        var session = new Agreement(name);
        using IInferenceSession cs = cpu.CreateSession(128), gs = gpu.CreateSession(128);
        var cl = new float[vocab];
        var gl = new float[vocab];
        cs.Forward(prompt, cl);
        gs.Forward(prompt, gl);
        session.Check(gl, cl, "prefill");
        for (int step = 0; step < 8; step++)
        {
            int token = rng.Next(vocab);
            cs.Forward([token], cl);
            gs.Forward([token], gl);
            session.Check(gl, cl, $"decode step {step}");
        }

        // Rewind and continue: the cache beyond the position is overwritten.
        cs.Rewind(20);
        gs.Rewind(20);
        cs.Forward(prompt.AsSpan(0, 5), cl);
        gs.Forward(prompt.AsSpan(0, 5), gl);
        session.Check(gl, cl, "after rewind");

        var recompute = new Agreement(name);
        using IInferenceSession ca = cpu.CreateSession(64), ga = gpu.CreateSession(64);
        var all = new float[20 * vocab];
        var allGpu = new float[20 * vocab];
        ca.ForwardAll(prompt.AsSpan(0, 20), all);
        ga.ForwardAll(prompt.AsSpan(0, 20), allGpu);
        for (int row = 0; row < 20; row++)
        {
            recompute.Check(allGpu.AsSpan(row * vocab, vocab).ToArray(), all.AsSpan(row * vocab, vocab).ToArray(), $"ForwardAll row {row}");
        }

        TestContext.Current.TestOutputHelper?.WriteLine($"{name}: {string.Join("; ", session.Log)} | {string.Join("; ", recompute.Log)}");
    }

    /// <summary>
    /// Logit agreement along one sequence. The engines add floats in different orders (~1e-7 apart); on the random-weight
    /// LLaMA-3-shaped fixture such a difference occasionally lands an activation exactly on an E2M1 rounding threshold and
    /// the two engines quantize it one step apart (on the H100: 2 of 4 runs of this test after re-quantization), after which their
    /// KV caches differ and the logits move by 1e-2 … 1e-1. Every comparison up to such a flip must agree within 1e-3; a
    /// flip must be a discrete jump (≥ 1e-2: an error between 1e-3 and 1e-2 would be a systematic inaccuracy, not a flip);
    /// after it the sequence is not compared further. stories260K (trained, larger margins) may not flip at all.
    /// </summary>
    private sealed class Agreement(string model)
    {
        private bool _flipped;

        public List<string> Log { get; } = [];

        public void Check(float[] gpu, float[] cpu, string what)
        {
            double error = Gpu.RelativeError(gpu, cpu);
            Log.Add($"{what} {error:E1}");
            if (_flipped || error <= Tolerance)
            {
                return;
            }

            Assert.True(model != "stories260K", $"{model}: {what}: relative error {error:E2}");
            Assert.True(error >= 1e-2, $"{model}: {what}: relative error {error:E2} is neither within 1e-3 nor a rounding-threshold flip");
            _flipped = true;
        }
    }

    /// <summary>
    /// Greedy decoding (argmax on the device, one graph per token, no host round trip) picks the CPU engine's 64 tokens.
    /// The engines add floats in different orders, so a value that sits exactly on an E2M1 rounding threshold can quantize
    /// differently (a whole E2M1 step), after which their logits differ by ~1e-1. The test therefore teacher-forces the GPU
    /// with the CPU's tokens and requires: the same argmax at every step where the logits agree within 1e-3; on
    /// stories260K no step may disagree at all; and the graph's on-device greedy loop reproduces the teacher-forced
    /// choices up to the first disagreement (a flip), so the whole 64-token sequence is identical when there is none.
    /// </summary>
    [Theory]
    [MemberData(nameof(Models))]
    public void GreedyTokensIdenticalFor64Steps(string name)
    {
        Gpu.Require();
        string path = QuantizedFixtures.Get(name);
        using var cpu = QuantizedModelLoader.LoadEngine(path, threads: 2);
        using var gpu = new CudaEngine(QuantizedModelReader.Read(path), new CudaEngineOptions { KvCache = CudaKvCacheFormat.Float32 });
        int vocab = cpu.Config.VocabularySize;
        int[] prompt = [cpu.Config.BosTokenId ?? 1, 5, 17, 42];
        using IInferenceSession cs = cpu.CreateSession(128);
        using CudaSession forced = gpu.CreateCudaSession(128), free = gpu.CreateCudaSession(128);
        var cl = new float[vocab];
        var gl = new float[vocab];
        cs.Forward(prompt, cl);
        forced.Forward(prompt, gl);
        int token = Sampler.ArgMax(cl);
        Assert.Equal(token, Sampler.ArgMax(gl));
        var expected = new int[64];
        int firstFlip = -1;
        var flips = new List<string>();
        int next = token;
        for (int i = 0; i < 64; i++)
        {
            cs.Forward([next], cl);
            forced.Forward([next], gl);
            expected[i] = Sampler.ArgMax(cl);
            double error = Gpu.RelativeError(gl, cl);
            if (error <= Tolerance)
            {
                Assert.True(expected[i] == Sampler.ArgMax(gl), $"{name}: step {i}: logits agree ({error:E2}) but the argmax differs");
            }
            else
            {
                flips.Add($"step {i}: {error:E1}");
                firstFlip = firstFlip < 0 ? i : firstFlip;
            }

            next = expected[i];
        }

        free.Forward(prompt, gl);
        var actual = new int[64];
        free.DecodeGreedy(token, actual);
        int agreeUpTo = firstFlip < 0 ? 64 : firstFlip;
        Assert.Equal(expected.AsSpan(0, agreeUpTo).ToArray(), actual.AsSpan(0, agreeUpTo).ToArray());
        TestContext.Current.TestOutputHelper?.WriteLine($"{name}: {agreeUpTo} identical greedy steps; steps where the logits differ by more than 1e-3: {(flips.Count == 0 ? "none" : string.Join(", ", flips))}");
        if (name == "stories260K")
        {
            Assert.Empty(flips);
        }
    }

    /// <summary>
    /// Over a 64-step greedy continuation: the GPU's decode logits equal its own recomputation of the whole sequence
    /// (ForwardAll), and both engines' ForwardAll agree; the per-step CPU/GPU decode errors are written to the output.
    /// </summary>
    [Theory]
    [MemberData(nameof(Models))]
    public void DecodeEqualsRecomputation(string name)
    {
        Gpu.Require();
        string path = QuantizedFixtures.Get(name);
        using var cpu = QuantizedModelLoader.LoadEngine(path, threads: 2);
        using var gpu = new CudaEngine(QuantizedModelReader.Read(path), new CudaEngineOptions { KvCache = CudaKvCacheFormat.Float32 });
        int vocab = cpu.Config.VocabularySize;
        var seq = new List<int> { cpu.Config.BosTokenId ?? 1, 5, 17, 42 };
        using IInferenceSession cs = cpu.CreateSession(128), gs = gpu.CreateSession(128);
        var cl = new float[vocab];
        var gl = new float[vocab];
        cs.Forward(seq.ToArray(), cl);
        gs.Forward(seq.ToArray(), gl);
        var cpuSteps = new List<float[]>();
        var gpuSteps = new List<float[]>();
        var errors = new List<string>();
        for (int i = 0; i < 60; i++)
        {
            seq.Add(Sampler.ArgMax(cl));
            cs.Forward([seq[^1]], cl);
            gs.Forward([seq[^1]], gl);
            cpuSteps.Add((float[])cl.Clone());
            gpuSteps.Add((float[])gl.Clone());
            errors.Add($"{Gpu.RelativeError(gl, cl):E1}");
        }

        int n = seq.Count;
        var cpuAll = new float[n * vocab];
        var gpuAll = new float[n * vocab];
        using (IInferenceSession ca = cpu.CreateSession(128))
        {
            ca.ForwardAll(seq.ToArray(), cpuAll);
        }

        using (IInferenceSession ga = gpu.CreateSession(128))
        {
            ga.ForwardAll(seq.ToArray(), gpuAll);
        }

        // Step i's logits are those of sequence position 4 + i.
        double gpuSelf = 0, cpuSelf = 0, allVsAll = 0;
        for (int i = 0; i < 60; i++)
        {
            int row = 4 + i;
            gpuSelf = Math.Max(gpuSelf, Gpu.RelativeError(gpuSteps[i], gpuAll.AsSpan(row * vocab, vocab)));
            cpuSelf = Math.Max(cpuSelf, Gpu.RelativeError(cpuSteps[i], cpuAll.AsSpan(row * vocab, vocab)));
            allVsAll = Math.Max(allVsAll, Gpu.RelativeError(gpuAll.AsSpan(row * vocab, vocab), cpuAll.AsSpan(row * vocab, vocab)));
        }

        string report = $"{name}: per-step decode error GPU vs CPU [{string.Join(' ', errors)}]; max GPU decode vs GPU ForwardAll {gpuSelf:E2}, " +
            $"CPU decode vs CPU ForwardAll {cpuSelf:E2}, GPU ForwardAll vs CPU ForwardAll {allVsAll:E2}";
        TestContext.Current.TestOutputHelper?.WriteLine(report);
        Assert.True(gpuSelf <= Tolerance, report);
        if (name == "stories260K")
        {
            Assert.True(allVsAll <= Tolerance, report);
        }
    }

    /// <summary>
    /// The decode path without a CUDA graph and without programmatic dependent launch runs the same kernels one launch at a
    /// time (attention over the filled chunks only, not the graph's whole-context grid): its logits equal the graph
    /// decode's to float rounding (≤ 1e-6 relative), for each decode GEMV kernel this GPU has.
    /// </summary>
    [Theory]
    [MemberData(nameof(Models))]
    public void UngraphedDecodeEqualsGraphDecode(string name)
    {
        Gpu.Require();
        string path = QuantizedFixtures.Get(name);
        QuantizedModel model = QuantizedModelReader.Read(path);
        using var graphed = new CudaEngine(model);
        using var plain = new CudaEngine(model, new CudaEngineOptions { UseGraphs = false, ProgrammaticLaunch = false });
        int vocab = model.Config.VocabularySize;
        var rng = new Random(Environment.TickCount);
        int[] prompt = Enumerable.Range(0, 12).Select(_ => rng.Next(vocab)).ToArray();
        var kernels = new List<CudaGemvKernel> { CudaGemvKernel.Dp4a };
        if (graphed.Kernels.HasTensorCoreGemv)
        {
            kernels.Add(CudaGemvKernel.TensorCoreFp8);
        }

        foreach (CudaGemvKernel kernel in kernels)
        {
            using CudaSession a = graphed.CreateCudaSession(64), b = plain.CreateCudaSession(64);
            a.GemvKernel = kernel;
            b.GemvKernel = kernel;
            var la = new float[vocab];
            var lb = new float[vocab];
            a.Forward(prompt, la);
            b.Forward(prompt, lb);
            Assert.True(Gpu.RelativeError(lb, la) <= 1e-6, $"{name}, {kernel}: prefill differs");
            for (int step = 0; step < 6; step++)
            {
                int token = rng.Next(vocab);
                a.Forward([token], la);
                b.Forward([token], lb);
                double error = Gpu.RelativeError(lb, la);
                Assert.True(error <= 1e-6, $"{name}, {kernel}: decode step {step}: graph vs plain launches differ by {error:E2}");
            }
        }
    }

    /// <summary>With the bf16 KV cache (the default) the logits stay close to the float-cache CPU engine and greedy decoding runs.</summary>
    [Theory]
    [MemberData(nameof(Models))]
    public void BFloat16CacheStaysClose(string name)
    {
        Gpu.Require();
        string path = QuantizedFixtures.Get(name);
        using var cpu = QuantizedModelLoader.LoadEngine(path, threads: 2);
        using var gpu = new CudaEngine(QuantizedModelReader.Read(path));
        int vocab = cpu.Config.VocabularySize;
        var rng = new Random(Environment.TickCount);
        int[] prompt = Enumerable.Range(0, 30).Select(_ => rng.Next(vocab)).ToArray();
        using IInferenceSession cs = cpu.CreateSession(64), gs = gpu.CreateSession(64);
        var cl = new float[vocab];
        var gl = new float[vocab];
        cs.Forward(prompt, cl);
        gs.Forward(prompt, gl);
        double error = Gpu.RelativeError(gl, cl);
        TestContext.Current.TestOutputHelper?.WriteLine($"{name}: bf16 KV cache, logits relative error {error:E2}");
        // bf16 keys/values are not the CPU engine's float cache: the rounding (2^-9 relative) moves attention scores, and
        // the 4-bit requantization of every later activation amplifies it (a code that flips moves by a whole E2M1 step).
        // Measured on the device: 5e-2 … 1.2e-1 relative on stories260K and the LLaMA-3-shaped fixture, depending on the
        // prompt (README, CUDA section); the float32 cache, not this bound, is what checks the engine against the CPU.
        const double bound = 2.5e-1;
        Assert.True(error <= bound, $"bf16 KV cache: relative error {error:E2} (bound {bound:E1})");
    }

    /// <summary>
    /// The GEMV option is resolved when the engine is created: Dp4a stays Dp4a, TensorCoreFp8 is kept where the fatbin has
    /// the kernel for this GPU and is refused by the constructor (not by a later session) where it does not, and sessions
    /// start with the engine's choice.
    /// </summary>
    [Fact]
    public void GemvOptionIsResolvedWhenTheEngineIsCreated()
    {
        (_, CudaKernels shared) = Gpu.Require();
        QuantizedModel model = QuantizedModelReader.Read(QuantizedFixtures.Stories);
        using (var dp4a = new CudaEngine(model, new CudaEngineOptions { Gemv = CudaGemvKernel.Dp4a }))
        {
            Assert.Equal(CudaGemvKernel.Dp4a, dp4a.GemvKernel);
            using CudaSession session = dp4a.CreateCudaSession(16);
            Assert.Equal(CudaGemvKernel.Dp4a, session.GemvKernel);
        }

        var fp8 = new CudaEngineOptions { Gemv = CudaGemvKernel.TensorCoreFp8 };
        if (shared.HasTensorCoreGemv)
        {
            using var engine = new CudaEngine(model, fp8);
            Assert.Equal(CudaGemvKernel.TensorCoreFp8, engine.GemvKernel);
            using CudaSession session = engine.CreateCudaSession(16);
            Assert.Equal(CudaGemvKernel.TensorCoreFp8, session.GemvKernel);
        }
        else
        {
            NotSupportedException e = Assert.Throws<NotSupportedException>(() => new CudaEngine(model, fp8));
            Assert.Contains("lmx_gemv_fp8", e.Message, StringComparison.Ordinal);
        }

        using var auto = new CudaEngine(model);
        Assert.Equal(shared.HasTensorCoreGemv && shared.HasNativeFp8Mma ? CudaGemvKernel.TensorCoreFp8 : CudaGemvKernel.Dp4a, auto.GemvKernel);
    }

    /// <summary>Seeded sampling on the device picks the CPU sampler's token for the same seed (same uniforms, same rules).</summary>
    [Fact]
    public void SeededSamplingMatchesCpuSampler()
    {
        Gpu.Require();
        string path = QuantizedFixtures.Stories;
        using var cpu = QuantizedModelLoader.LoadEngine(path, threads: 2);
        using var gpu = new CudaEngine(QuantizedModelReader.Read(path), new CudaEngineOptions { KvCache = CudaKvCacheFormat.Float32 });
        int vocab = cpu.Config.VocabularySize;
        int[] prompt = [1, 9, 33, 70, 11];
        using IInferenceSession cs = cpu.CreateSession(32);
        using CudaSession gs = gpu.CreateCudaSession(32);
        var cl = new float[vocab];
        cs.Forward(prompt, cl);
        gs.ForwardToDevice(prompt);
        int agree = 0, trials = 0;
        foreach (SamplingOptions baseOptions in new[]
        {
            new SamplingOptions { Temperature = 0.8f },
            new SamplingOptions { Temperature = 1f, TopK = 20 },
            new SamplingOptions { Temperature = 0.9f, TopP = 0.9f, RepetitionPenalty = 1.3f, FrequencyPenalty = 0.2f },
        })
        {
            for (int seed = 0; seed < 40; seed++)
            {
                SamplingOptions options = baseOptions with { Seed = seed };
                int expected = new Sampler(options).Sample((float[])cl.Clone(), prompt);
                gs.Rewind(0);
                gs.ForwardToDevice(prompt); // fresh logits (penalties modify them in place)
                int actual = new CudaSampler(options).Sample(gs, prompt);
                agree += expected == actual ? 1 : 0;
                trials++;
            }
        }

        Assert.True(agree >= trials * 0.95, $"{agree} of {trials} seeded draws agree");
    }
}
