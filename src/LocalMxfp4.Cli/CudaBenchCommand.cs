using LocalMxfp4.Cuda;

namespace LocalMxfp4.Cli;

/// <summary>
/// <c>lmx bench --backend cuda [--prefill-tokens 2048] [--decode-tokens 256] [--repeats 5] [--model DIR]</c>: the CUDA
/// engine's decode tokens/s (batch 1) and prefill tokens/s on a LLaMA-3-8B-shaped random MXFP4 model built in memory
/// (or the quantized model given), against the weight-streaming roofline measured in the same run.
/// Environment: <c>LMX_BENCH_LAYERS</c> (default 32), <c>LMX_BENCH_KV</c> (bf16 | f32), <c>LMX_BENCH_PDL</c> (0 = no
/// programmatic launch), <c>LOCALMXFP4_CARVEOUT</c> (shared-memory carveout percent, −1 = driver default).
/// </summary>
internal static class CudaBenchCommand
{
    public static int Run(int prefillTokens, int decodeTokens, int repeats, string? modelPath)
    {
        var options = new CudaBenchmarkOptions
        {
            PrefillTokens = prefillTokens,
            DecodeTokens = decodeTokens,
            Repeats = Math.Clamp(repeats, 1, 30),
            ModelPath = modelPath,
            Layers = int.TryParse(Environment.GetEnvironmentVariable("LMX_BENCH_LAYERS"), out int layers) && layers > 0 ? layers : 32,
            KvCache = Environment.GetEnvironmentVariable("LMX_BENCH_KV") is "f32" ? CudaKvCacheFormat.Float32 : CudaKvCacheFormat.BFloat16,
            ProgrammaticLaunch = Environment.GetEnvironmentVariable("LMX_BENCH_PDL") is not "0",
        };
        try
        {
            CudaBenchmark.Run(options, Console.Out);
            return 0;
        }
        catch (CudaUnavailableException e)
        {
            Console.Error.WriteLine("error: " + e.Message);
            return 2;
        }
    }
}
