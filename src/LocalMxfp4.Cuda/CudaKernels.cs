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
        GemvBf16 = module.GetFunction("lmx_gemv_bf16");
        GemmBf16 = module.GetFunction("lmx_gemm_bf16");
        ArgmaxPartial = module.GetFunction("lmx_argmax_partial");
        ArgmaxFinal = module.GetFunction("lmx_argmax_final");
        Penalties = module.GetFunction("lmx_penalties");
        Sample = module.GetFunction("lmx_sample");
        SetInt = module.GetFunction("lmx_set_int");
        GemmMxf4Sm120 = blackwell?.GetFunction("lmx_gemm_mxf4_sm120");

        // LOCALMXFP4_CARVEOUT (percent) sets one shared-memory carveout on every kernel. On an H100 a uniform 100 % made no
        // measurable difference to the decode step (3.623 vs 3.626 ms, bench/results), so the default leaves the driver's choice.
        Carveout = int.TryParse(Environment.GetEnvironmentVariable("LOCALMXFP4_CARVEOUT"), out int carveout) ? carveout : -1;
        if (Carveout >= 0)
        {
            foreach (CudaFunction f in new[] { Quantize, Gemv, BlockSums, Gemm, Embed, RmsNorm, RopeKvBf16, RopeKvF32, AttentionBf16, AttentionF32,
                AttentionDecodeBf16, AttentionDecodeF32, GemvBf16, GemmBf16, ArgmaxPartial, ArgmaxFinal, Penalties, Sample, SetInt })
            {
                f.SetSharedMemoryCarveout(Carveout);
            }
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

    internal CudaFunction GemvBf16 { get; }

    internal CudaFunction GemmBf16 { get; }

    internal CudaFunction ArgmaxPartial { get; }

    internal CudaFunction ArgmaxFinal { get; }

    internal CudaFunction Penalties { get; }

    internal CudaFunction Sample { get; }

    internal CudaFunction SetInt { get; }

    internal CudaFunction? GemmMxf4Sm120 { get; }

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
