namespace LocalMxfp4.Cuda;

/// <summary>
/// The engine's kernels (<c>localmxfp4_kernels.fatbin</c>, built from <c>native/</c>) loaded into a context, with
/// one typed launcher per kernel. The fatbin is looked for in <c>LOCALMXFP4_KERNELS_DIR</c>, then next to this assembly.
/// On compute capability 12.x the native FP4 kernels (<c>localmxfp4_blackwell.fatbin</c>) are loaded too when present.
/// </summary>
public sealed class CudaKernels : IDisposable
{
    /// <summary>File name of the main fatbin.</summary>
    public const string FatbinName = "localmxfp4_kernels.fatbin";

    /// <summary>File name of the Blackwell (sm_120a) fatbin.</summary>
    public const string BlackwellFatbinName = "localmxfp4_blackwell.fatbin";

    /// <summary>Environment variable naming a directory that holds the fatbins (overrides the assembly directory).</summary>
    public const string DirectoryVariable = "LOCALMXFP4_KERNELS_DIR";

    /// <summary>Dynamic shared memory of <see cref="Gemm"/> (two pipeline stages).</summary>
    internal const int GemmSharedBytes = 2 * ((64 * 160) + (128 * 80) + (64 * 4) + (128 * 4));

    /// <summary>Dynamic shared memory of <see cref="Gemv"/>: the token's codes (32 bytes per block) and scale bytes.</summary>
    internal static int GemvSharedBytes(int paddedBlocks) => ((paddedBlocks * 33) + 15) / 16 * 16;

    /// <summary>Grid of the persistent <see cref="Gemv"/>: one CTA per 16 rows, at most four per SM.</summary>
    internal int GemvGrid(int rows) => Math.Max(1, Math.Min((rows + 15) / 16, Context.Multiprocessors * 4));

    /// <summary>Candidate capacity of the GPU sampler (top-k / nucleus candidates sorted on the device).</summary>
    public const int SampleCapacity = 16384;

    private readonly CudaModule _module;
    private readonly CudaModule? _blackwell;

    private CudaKernels(CudaContext context, CudaModule module, CudaModule? blackwell, string path)
    {
        Context = context;
        _module = module;
        _blackwell = blackwell;
        Path = path;
        Quantize = module.GetFunction("lmx_quantize");
        Gemv = module.GetFunction("lmx_gemv");
        BlockSums = module.GetFunction("lmx_block_sums");
        Gemm = module.GetFunction("lmx_gemm");
        Embed = module.GetFunction("lmx_embed");
        RmsNorm = module.GetFunction("lmx_rmsnorm");
        RopeKvBf16 = module.GetFunction("lmx_rope_kv_bf16");
        RopeKvF32 = module.GetFunction("lmx_rope_kv_f32");
        AttentionBf16 = module.GetFunction("lmx_attention_bf16");
        AttentionF32 = module.GetFunction("lmx_attention_f32");
        AttentionDecodeBf16 = module.GetFunction("lmx_attention_decode_bf16");
        AttentionDecodeF32 = module.GetFunction("lmx_attention_decode_f32");
        AttentionDecodeG4Bf16 = module.GetFunction("lmx_attention_decode_g4_bf16");
        AttentionDecodeG4F32 = module.GetFunction("lmx_attention_decode_g4_f32");
        GemvBf16 = module.GetFunction("lmx_gemv_bf16");
        GemmBf16 = module.GetFunction("lmx_gemm_bf16");
        ArgmaxPartial = module.GetFunction("lmx_argmax_partial");
        ArgmaxFinal = module.GetFunction("lmx_argmax_final");
        Penalties = module.GetFunction("lmx_penalties");
        Sample = module.GetFunction("lmx_sample");
        SetInt = module.GetFunction("lmx_set_int");
        GemvSplit = module.GetFunction("lmx_gemv_split");
        GemvFp8 = module.TryGetFunction("lmx_gemv_fp8");
        GemmMxf4Sm120 = blackwell?.GetFunction("lmx_gemm_mxf4_sm120");

        // LOCALMXFP4_CARVEOUT (percent) sets one shared-memory carveout on every kernel. On an H100 a uniform 100 % made no
        // measurable difference to the decode step (3.623 vs 3.626 ms, bench/results), so the default leaves the driver's choice.
        Carveout = int.TryParse(Environment.GetEnvironmentVariable("LOCALMXFP4_CARVEOUT"), out int carveout) ? carveout : -1;
        if (Carveout >= 0)
        {
            foreach (CudaFunction f in new[] { Quantize, Gemv, BlockSums, Gemm, Embed, RmsNorm, RopeKvBf16, RopeKvF32, AttentionBf16, AttentionF32,
                AttentionDecodeBf16, AttentionDecodeF32, AttentionDecodeG4Bf16, AttentionDecodeG4F32, GemvBf16, GemmBf16, ArgmaxPartial, ArgmaxFinal, Penalties, Sample, SetInt })
            {
                f.SetSharedMemoryCarveout(Carveout);
            }

            GemvSplit.SetSharedMemoryCarveout(Carveout);
            GemvFp8?.SetSharedMemoryCarveout(Carveout);
        }
    }

    /// <summary>The shared-memory carveout set on every kernel (percent; −1 = the driver's choice).</summary>
    public int Carveout { get; }

    /// <summary>The context the kernels live in.</summary>
    public CudaContext Context { get; }

    /// <summary>The fatbin loaded.</summary>
    public string Path { get; }

    /// <summary>True when the native FP4 (sm_120a) kernels were loaded.</summary>
    public bool HasBlackwellKernels => _blackwell is not null;

    internal CudaFunction Quantize { get; }

    internal CudaFunction Gemv { get; }

    internal CudaFunction BlockSums { get; }

    internal CudaFunction Gemm { get; }

    internal CudaFunction Embed { get; }

    internal CudaFunction RmsNorm { get; }

    internal CudaFunction RopeKvBf16 { get; }

    internal CudaFunction RopeKvF32 { get; }

    internal CudaFunction AttentionBf16 { get; }

    internal CudaFunction AttentionF32 { get; }

    internal CudaFunction AttentionDecodeBf16 { get; }

    internal CudaFunction AttentionDecodeF32 { get; }

    /// <summary>Decode attention unrolled for GQA groups of at most 4 query heads per KV head.</summary>
    internal CudaFunction AttentionDecodeG4Bf16 { get; }

    /// <summary>Decode attention unrolled for GQA groups of at most 4 (float32 cache).</summary>
    internal CudaFunction AttentionDecodeG4F32 { get; }

    internal CudaFunction GemvBf16 { get; }

    internal CudaFunction GemmBf16 { get; }

    internal CudaFunction ArgmaxPartial { get; }

    internal CudaFunction ArgmaxFinal { get; }

    internal CudaFunction Penalties { get; }

    internal CudaFunction Sample { get; }

    internal CudaFunction SetInt { get; }

    internal CudaFunction? GemmMxf4Sm120 { get; }

    /// <summary>The dp4a decode GEMV with the blocks split over several warps (matrices with few rows).</summary>
    internal CudaFunction GemvSplit { get; }

    /// <summary>The FP8 tensor-core decode GEMV; null when the fatbin's code for this GPU has none (before compute 8.9, or built with CUDA &lt; 12.4).</summary>
    internal CudaFunction? GemvFp8 { get; }

    /// <summary>True when the FP8 tensor-core decode GEMV is available on this GPU.</summary>
    public bool HasTensorCoreGemv => GemvFp8 is not null;

    /// <summary>
    /// True where mma.sync on e4m3 is a native FP8 tensor-core instruction (QMMA in the disassembly): compute 8.9 and 12.x.
    /// Hopper (9.0) and sm_100 emulate it with conversions and two fp16 HMMAs, which made the FP8 GEMV slower than dp4a on
    /// an H100 (bench/results), so Auto keeps dp4a there.
    /// </summary>
    public bool HasNativeFp8Mma => Context.ComputeCapability is { Major: 8, Minor: 9 } or { Major: 12 };

    /// <summary>The kernel <paramref name="requested"/> resolves to on this GPU.</summary>
    /// <exception cref="NotSupportedException">The FP8 kernel was asked for and this GPU or build has none.</exception>
    public CudaGemvKernel Resolve(CudaGemvKernel requested) => requested switch
    {
        CudaGemvKernel.Auto => GemvFp8 is not null && HasNativeFp8Mma ? CudaGemvKernel.TensorCoreFp8 : CudaGemvKernel.Dp4a,
        CudaGemvKernel.TensorCoreFp8 when GemvFp8 is null => throw new NotSupportedException(
            $"The FP8 tensor-core GEMV needs compute capability 8.9+ and kernels built with CUDA 12.4+; {Context.Name} is {Context.ComputeCapability} and {Path} has no lmx_gemv_fp8 for it."),
        _ => requested,
    };

    /// <summary>
    /// Split-K of the FP8 GEMV: enough warps (quads of rows × slices of the blocks) to keep every SM streaming, as few
    /// slices as that allows (each slice adds a reduction), and at least 4 mma steps per slice.
    /// </summary>
    internal int GemvSplitK(int rows, int paddedBlocks)
    {
        int quads = (rows + 3) / 4, steps = paddedBlocks / 4, wanted = Context.Multiprocessors * 48;
        int split = 1;
        while (split < 8 && (long)quads * split < wanted && steps / (split * 2) >= 4)
        {
            split *= 2;
        }

        return split;
    }

    /// <summary>False: the dp4a GEMV always runs the persistent kernel (benchmarks compare against it).</summary>
    internal bool Dp4aSplitEnabled { get; set; } = true;

    /// <summary>
    /// Split-K of the dp4a GEMV: 1 (the persistent kernel, one warp per row pair) when the row pairs alone give every SM
    /// 32 warps, else the fewest slices (2, 4, 8) that do while each keeps at least two 32-block strides. On an H100 this
    /// picked the best or within 0.2 µs of the best split for all four LLaMA-3-8B shapes (bench/results).
    /// </summary>
    internal int Dp4aSplitK(int rows, int paddedBlocks)
    {
        if (!Dp4aSplitEnabled)
        {
            return 1;
        }

        int pairs = (rows + 1) / 2, wanted = Context.Multiprocessors * 32, strides = (paddedBlocks + 31) / 32;
        int split = 1;
        while (split < 8 && (long)pairs * split < wanted && strides / (split * 2) >= 2)
        {
            split *= 2;
        }

        return split;
    }

    /// <summary>
    /// Queues y (+)= W·a for one token with <paramref name="kernel"/> (resolved, not Auto). <paramref name="splitK"/>:
    /// 0 = the heuristic (<see cref="Dp4aSplitK"/>, <see cref="GemvSplitK"/>); for dp4a, 1 = the persistent kernel and
    /// 2/4/8 the split kernel (−1 forces the split kernel with one slice, for tests).
    /// </summary>
    internal void LaunchGemv(CudaStream stream, CudaGemvKernel kernel, ulong packed, ulong scales, int rows, int paddedBlocks, ulong codes, ulong exps, ulong y, bool accumulate, int splitK = 0)
    {
        if (kernel == CudaGemvKernel.Dp4a)
        {
            int split = splitK != 0 ? splitK : Dp4aSplitK(rows, paddedBlocks);
            if (split == 1)
            {
                stream.Launch(Gemv, (GemvGrid(rows), 1, 1), (256, 1, 1), GemvSharedBytes(paddedBlocks), packed, scales, rows, paddedBlocks, codes, exps, y, accumulate ? 1 : 0);
            }
            else
            {
                split = Math.Abs(split);
                int pairsPerCta = 8 / split;
                stream.Launch(GemvSplit, ((((rows + 1) / 2) + pairsPerCta - 1) / pairsPerCta, 1, 1), (256, 1, 1), GemvSharedBytes(paddedBlocks) + 64,
                    packed, scales, rows, paddedBlocks, codes, exps, y, accumulate ? 1 : 0, split);
            }

            return;
        }

        if (kernel == CudaGemvKernel.TensorCoreFp8)
        {
            int split = splitK > 0 ? splitK : GemvSplitK(rows, paddedBlocks);
            int quadsPerCta = 8 / split;
            stream.Launch(GemvFp8 ?? throw new NotSupportedException("lmx_gemv_fp8 is not available."), ((((rows + 3) / 4) + quadsPerCta - 1) / quadsPerCta, 1, 1), (256, 1, 1),
                GemvFp8SharedBytes(paddedBlocks), packed, scales, rows, paddedBlocks, codes, exps, y, accumulate ? 1 : 0, split);
        }
        else
        {
            throw new ArgumentOutOfRangeException(nameof(kernel), kernel, "Resolve the kernel first.");
        }
    }

    /// <summary>Dynamic shared memory of <see cref="GemvFp8"/>: e4m3 activations, their scales, the split-K partials.</summary>
    internal static int GemvFp8SharedBytes(int paddedBlocks) => (paddedBlocks * 36) + 128;

    /// <summary>Where the fatbins are looked for, in order.</summary>
    public static IReadOnlyList<string> SearchDirectories()
    {
        var dirs = new List<string>();
        string? env = Environment.GetEnvironmentVariable(DirectoryVariable);
        if (!string.IsNullOrEmpty(env))
        {
            dirs.Add(env);
        }

        string? assemblyDir = System.IO.Path.GetDirectoryName(typeof(CudaKernels).Assembly.Location);
        if (!string.IsNullOrEmpty(assemblyDir))
        {
            dirs.Add(assemblyDir);
        }

        dirs.Add(AppContext.BaseDirectory);
        return dirs.Distinct().ToArray();
    }

    /// <summary>
    /// Loads the kernels into <paramref name="context"/>. Throws <see cref="CudaUnavailableException"/> when no fatbin is
    /// found or it holds no code for this GPU.
    /// </summary>
    public static CudaKernels Load(CudaContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        IReadOnlyList<string> dirs = SearchDirectories();
        string? path = dirs.Select(d => System.IO.Path.Combine(d, FatbinName)).FirstOrDefault(File.Exists);
        if (path is null)
        {
            throw new CudaUnavailableException($"the kernels ({FatbinName}) were not found in {string.Join(", ", dirs)}; build native/ with nvcc (the .NET build does when nvcc is on PATH) or set {DirectoryVariable}.");
        }

        CudaModule module;
        try
        {
            module = CudaModule.Load(context, File.ReadAllBytes(path), path);
        }
        catch (CudaException e) when (e.Result is Interop.CudaResult.NoBinaryForGpu or Interop.CudaResult.InvalidImage)
        {
            throw new CudaUnavailableException($"{path} has no code for {context.Name} (compute capability {context.ComputeCapability}): {e.ErrorName}.", e);
        }

        CudaModule? blackwell = null;
        string bwPath = System.IO.Path.Combine(System.IO.Path.GetDirectoryName(path)!, BlackwellFatbinName);
        if (context.ComputeCapability.Major == 12 && File.Exists(bwPath))
        {
            blackwell = CudaModule.Load(context, File.ReadAllBytes(bwPath), bwPath);
        }

        try
        {
            return new CudaKernels(context, module, blackwell, path);
        }
        catch
        {
            module.Dispose();
            blackwell?.Dispose();
            throw;
        }
    }

    /// <summary>Unloads the modules.</summary>
    public void Dispose()
    {
        _module.Dispose();
        _blackwell?.Dispose();
    }
}
