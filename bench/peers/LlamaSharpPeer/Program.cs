using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using LLama;
using LLama.Common;
using LLama.Native;
using LocalMxfp4.Engine.Contract;
using LocalMxfp4.Engine.Loading;
using LocalMxfp4.Engine.Sampling;
using LocalMxfp4.Serving;

// Side by side in one process, on the same MXFP4 weights (our model directory and its GGUF export): prefill of a
// 512-token prompt and batch-1 greedy decode, LocalMxfp4 (W4A4, C#) against llama.cpp (LLamaSharp 0.30, W4A8 with
// q8_0 activations), alternating rounds so machine drift hits both. Usage: LlamaSharpPeer MODEL_DIR MODEL.gguf [OUT.json]
if (args.Length < 2)
{
    Console.Error.WriteLine("usage: LlamaSharpPeer MODEL_DIR MODEL.gguf [RESULT.json] [--threads N] [--rounds N]");
    return 2;
}

string modelDir = args[0], gguf = args[1];
string? resultPath = args.Length > 2 && !args[2].StartsWith("--", StringComparison.Ordinal) ? args[2] : null;
int threads = Option("--threads", Environment.ProcessorCount), rounds = Option("--rounds", 3);
const int PromptTokens = 512, DecodeTokens = 64, Context = 1024;

int Option(string name, int fallback)
{
    int i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1], CultureInfo.InvariantCulture) : fallback;
}

var rng = new Random(20261204);
int[] prompt = [128000, .. Enumerable.Range(0, PromptTokens - 1).Select(_ => rng.Next(1000, 120000))];
Console.WriteLine($"machine: {Environment.ProcessorCount} logical CPUs, {RuntimeInformation.ProcessArchitecture}, {RuntimeInformation.OSDescription}, {RuntimeInformation.FrameworkDescription}; threads {threads}; prompt {PromptTokens} tokens (seed 20261204), {DecodeTokens} greedy tokens, {rounds} alternating rounds");

// ---- LocalMxfp4 ----
using IInferenceEngine ours = EngineLoader.Load(modelDir, new EngineLoadOptions { Backend = EngineBackend.Cpu, Threads = threads });
using var serving = new ServingEngine(ours, new ServingOptions { ContextLength = Context, MaxBatchSequences = 1, MaxBatchTokens = PromptTokens, PrefixCaching = false });
(double Prefill, double Decode, int[] Tokens, float[] Logits) RunOurs()
{
    SequenceResult r = serving.Generate(prompt, SamplingOptions.Greedy, DecodeTokens, new HashSet<int>());
    return (r.TimeToFirstToken.TotalSeconds, (DecodeTokens - 1) / r.DecodeTime.TotalSeconds, [.. r.OutputTokenIds], []);
}

// ---- llama.cpp through LLamaSharp ----
NativeLibraryConfig.All.WithLogCallback((level, message) => { if (level >= LLamaLogLevel.Warning) Console.Error.Write(message); });
var parameters = new ModelParams(gguf) { ContextSize = Context, BatchSize = PromptTokens, UBatchSize = PromptTokens, Threads = threads, BatchThreads = threads, GpuLayerCount = 0 };
using LLamaWeights weights = LLamaWeights.LoadFromFile(parameters);
using LLamaContext context = weights.CreateContext(parameters);
(double Prefill, double Decode, int[] Tokens, float[] Logits) RunPeer()
{
    context.NativeHandle.MemoryClear(true);
    var batch = new LLamaBatch();
    for (int i = 0; i < prompt.Length; i++)
    {
        batch.Add((LLamaToken)prompt[i], (LLamaPos)i, (LLamaSeqId)0, i == prompt.Length - 1);
    }

    long start = Stopwatch.GetTimestamp();
    Check(context.Decode(batch));
    float[] logits = context.NativeHandle.GetLogitsIth(batch.TokenCount - 1).ToArray();
    int next = Sampler.ArgMax(logits);
    double prefill = Stopwatch.GetElapsedTime(start).TotalSeconds;
    var tokens = new List<int> { next };
    long decodeStart = Stopwatch.GetTimestamp();
    for (int i = 1; i < DecodeTokens; i++)
    {
        batch.Clear();
        batch.Add((LLamaToken)next, (LLamaPos)(prompt.Length + i - 1), (LLamaSeqId)0, true);
        Check(context.Decode(batch));
        next = Sampler.ArgMax(context.NativeHandle.GetLogitsIth(0));
        tokens.Add(next);
    }

    double decode = (DecodeTokens - 1) / Stopwatch.GetElapsedTime(decodeStart).TotalSeconds;
    return (prefill, decode, [.. tokens], logits);
}

static void Check(DecodeResult r)
{
    if (r != DecodeResult.Ok)
    {
        throw new InvalidOperationException($"llama_decode: {r}");
    }
}

// Warm-up (JIT, page faults, thread pools), then alternating measured rounds.
RunOurs();
RunPeer();
var oursRuns = new List<(double Prefill, double Decode, int[] Tokens, float[] Logits)>();
var peerRuns = new List<(double Prefill, double Decode, int[] Tokens, float[] Logits)>();
for (int round = 0; round < rounds; round++)
{
    oursRuns.Add(RunOurs());
    peerRuns.Add(RunPeer());
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"round {round + 1}: LocalMxfp4 prefill {PromptTokens / oursRuns[^1].Prefill,6:F1} tok/s, decode {oursRuns[^1].Decode,5:F1} tok/s | llama.cpp prefill {PromptTokens / peerRuns[^1].Prefill,6:F1} tok/s, decode {peerRuns[^1].Decode,5:F1} tok/s"));
}

static double Median(IEnumerable<double> values)
{
    double[] v = [.. values.Order()];
    return v[v.Length / 2];
}

double oursPrefill = PromptTokens / Median(oursRuns.Select(r => r.Prefill)), peerPrefill = PromptTokens / Median(peerRuns.Select(r => r.Prefill));
double oursDecode = Median(oursRuns.Select(r => r.Decode)), peerDecode = Median(peerRuns.Select(r => r.Decode));

// The same function? Compare the next-token logits of the prompt computed fresh by each engine.
var logitsOurs = new float[ours.Config.VocabularySize];
using (IInferenceSession s = ours.CreateSession(Context))
{
    s.Forward(prompt, logitsOurs);
}

float[] logitsPeer = peerRuns[^1].Logits;
double correlation = Correlation(logitsOurs, logitsPeer);
static double Correlation(float[] a, float[] b)
{
    double ma = a.Average(), mb = b.Average(), sab = 0, saa = 0, sbb = 0;
    for (int i = 0; i < a.Length; i++)
    {
        sab += (a[i] - ma) * (b[i] - mb);
        saa += (a[i] - ma) * (a[i] - ma);
        sbb += (b[i] - mb) * (b[i] - mb);
    }

    return sab / Math.Sqrt(saa * sbb);
}

Console.WriteLine();
Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| | LocalMxfp4 (W4A4, C#) | llama.cpp via LLamaSharp 0.30 (W4A8) | ratio |"));
Console.WriteLine("|---|---|---|---|");
Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| prefill {PromptTokens} tokens | {oursPrefill:F1} tok/s | {peerPrefill:F1} tok/s | {oursPrefill / peerPrefill:F2}× |"));
Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| decode, batch 1 | {oursDecode:F1} tok/s | {peerDecode:F1} tok/s | {oursDecode / peerDecode:F2}× |"));
Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"next-token logits of the prompt, LocalMxfp4 vs llama.cpp: Pearson r = {correlation:F4} (same weights; W4A4 vs W4A8 activations)"));
if (resultPath is not null)
{
    File.WriteAllText(resultPath, JsonSerializer.Serialize(new
    {
        date = DateTime.UtcNow.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture),
        machine = $"{Environment.ProcessorCount} logical CPUs, {RuntimeInformation.OSDescription}",
        runtime = RuntimeInformation.FrameworkDescription,
        model = Path.GetFullPath(modelDir),
        threads,
        promptTokens = PromptTokens,
        decodeTokens = DecodeTokens,
        rounds,
        localmxfp4 = new { prefillTokensPerSecond = oursPrefill, decodeTokensPerSecond = oursDecode, runs = oursRuns.Select(r => new { prefillSeconds = r.Prefill, decodeTokensPerSecond = r.Decode }) },
        llamacpp = new { prefillTokensPerSecond = peerPrefill, decodeTokensPerSecond = peerDecode, runs = peerRuns.Select(r => new { prefillSeconds = r.Prefill, decodeTokensPerSecond = r.Decode }) },
        ratios = new { prefill = oursPrefill / peerPrefill, decode = oursDecode / peerDecode },
        logitsCorrelation = correlation,
    }, new JsonSerializerOptions { WriteIndented = true }));
}

return 0;
