using System.Diagnostics;
using System.Reflection;
using LocalMxfp4.Engine.Contract;
using LocalMxfp4.Engine.Layers;
using LocalMxfp4.Engine.Loading;
using LocalMxfp4.Engine.Transformer;
using LocalMxfp4.Models.Checkpoint;
using LocalMxfp4.Models.Configuration;
using LocalMxfp4.Models.Quantized;
using LocalMxfp4.Numerics.Mxfp4;
using LocalMxfp4.Quantization.Calibration;
using LocalMxfp4.Engine.Evaluation;
using LocalMxfp4.Quantization.Gptq;
using LocalMxfp4.Quantization.Transforms;
using LocalMxfp4.Safetensors;
using LocalMxfp4.Tokenization;

namespace LocalMxfp4.Quantization;

/// <summary>
/// Turns a float LLaMA checkpoint into a W4A4 MXFP4 model (spec §3): calibration statistics, smoothing folded into
/// norms and weights, one rotation per linear input (DuQuant++ greedy search on a quantized-propagated calibration
/// pass, the block Hadamard, or none), weights rotated and quantized (round to nearest, exponent search, or GPTQ),
/// and the result written atomically with its <c>quantization_config</c>.
/// </summary>
public sealed class ModelQuantizer(QuantizerOptions options, IProgress<QuantizationProgress>? progress = null)
{
    private static readonly string ToolVersion = "LocalMxfp4 lmx " +
        (typeof(ModelQuantizer).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0");

    /// <summary>Quantizes the float model at <paramref name="source"/> and writes it to <paramref name="output"/>.</summary>
    public QuantizationSummary Run(string source, string output)
    {
        var clock = Stopwatch.StartNew();
        QuantizedModel model = Quantize(source, out IReadOnlyList<SiteTransform> sites);
        Report("writing", 0, 1);
        QuantizedModelWriter.Write(model, ModelDirectory.Resolve(source).Directory, output, options.Overwrite);
        Report("writing", 1, 1);
        long bytes = model.Layers.Sum(l => new[] { l.Query, l.Key, l.Value, l.Output, l.Gate, l.Up, l.Down }.Sum(m => m.Bytes));
        var siteSummaries = sites.Where(s => s.SearchResult is not null)
            .Select(s => (s.Name, s.SearchResult!.StepsKept, s.SearchResult.RangeBefore, s.SearchResult.RangeAfter)).ToArray();
        return new QuantizationSummary(Path.GetFullPath(output), model.Quantization, bytes, siteSummaries, clock.Elapsed);
    }

    /// <summary>Quantizes in memory (no files written).</summary>
    public QuantizedModel Quantize(string source, out IReadOnlyList<SiteTransform> siteList)
    {
        TransformedModel t = Transform(source);
        LlamaConfig config = t.Folded.Config;
        using var parallel = new ParallelRows(options.Threads);
        var quantizedLayers = new QuantizedLayer[config.LayerCount];
        for (int i = 0; i < config.LayerCount; i++)
        {
            Report("quantizing weights", i, config.LayerCount);
            quantizedLayers[i] = options.Gptq
                ? QuantizeLayerGptq(t.Folded, quantizedLayers, t.Sites, i, t.Windows, parallel)
                : QuantizeLayer(t.Folded.Layers[i], t.Sites, i, config);
        }

        Report("quantizing weights", config.LayerCount, config.LayerCount);
        var quantization = new QuantizationConfig
        {
            Method = options.Method,
            ActivationScaleRule = options.ScaleRule,
            WeightScales = options.WeightScales,
            SmoothingAlpha = options.EffectiveAlpha,
            RotationSteps = options.Method == TransformMethod.DuQuant ? options.RotationSteps : 0,
            RotationIndex = options.RotationIndex,
            Seed = options.Seed,
            Gptq = options.Gptq,
            CalibrationSource = options.NeedsCalibration ? Path.GetFileName(options.CalibrationFile) : null,
            CalibrationSamples = t.Windows.Length,
            CalibrationSequenceLength = t.Windows.Length > 0 ? t.Windows[0].Length : 0,
            ToolVersion = ToolVersion,
        };
        siteList = t.Sites.Cast<SiteTransform>().ToArray();
        return new QuantizedModel(config, quantization, t.Folded.Embedding, quantizedLayers, t.Folded.FinalNorm, t.Folded.LmHead);
    }

    /// <summary>
    /// Everything before weight quantization: calibration windows, smoothing folded into a copy of the float tensors,
    /// and every site's transform chosen (for DuQuant++, by the quantized-propagated rotation search).
    /// </summary>
    internal TransformedModel Transform(string source)
    {
        ModelDirectory dir = ModelDirectory.Resolve(source);
        LlamaConfig config = dir.LoadConfig();
        if (config.QuantizationConfig is not null)
        {
            throw new ModelConfigException(Path.Combine(dir.Directory, "config.json"), "quantization_config", "the model is already quantized; quantize a float checkpoint.");
        }

        FloatModelTensors original;
        using (SafetensorsCheckpoint checkpoint = SafetensorsCheckpoint.Open(dir.Weights))
        {
            original = FloatModelLoader.ReadTensors(checkpoint, config);
        }

        using var parallel = new ParallelRows(options.Threads);
        int length = Math.Min(options.CalibrationSequenceLength, config.MaxPositions);
        int[][] windows = options.NeedsCalibration ? CalibrationWindows(dir, config, length) : [];

        // 1. Activation statistics of the float model, for smoothing.
        double alpha = options.EffectiveAlpha;
        var layers = original.Layers.Select(l => l.Clone()).ToArray();
        var divisors = new float[config.LayerCount][];
        if (alpha > 0)
        {
            ChannelMax[][] stats = CollectActivationMax(original, windows, parallel);
            for (int i = 0; i < layers.Length; i++)
            {
                divisors[i] = FoldSmoothing(layers[i], stats[i], alpha);
            }
        }

        // 2. One transform state per site; the rotation is chosen by method (searched here for DuQuant++).
        var rng = new Random(options.Seed);
        var sites = new SiteTransform[config.LayerCount, 4];
        for (int i = 0; i < layers.Length; i++)
        {
            sites[i, 0] = NewSite($"layer {i} qkv", config.HiddenSize, null, rng);
            sites[i, 1] = NewSite($"layer {i} o", config.QueryWidth, divisors[i], rng);
            sites[i, 2] = NewSite($"layer {i} gate/up", config.HiddenSize, null, rng);
            sites[i, 3] = NewSite($"layer {i} down", config.IntermediateSize, null, rng);
        }

        var folded = original with { Layers = layers };
        if (options.Method == TransformMethod.DuQuant)
        {
            SearchRotations(folded, sites, windows, length, parallel);
        }

        return new TransformedModel(original, folded, sites, windows);
    }

    private SiteTransform NewSite(string name, int channels, float[]? divisor, Random rng) =>
        new(name, channels, options.Method, divisor, options.RotationSteps, options.RotationIndex, rng);

    private int[][] CalibrationWindows(ModelDirectory dir, LlamaConfig config, int length)
    {
        if (options.CalibrationFile is null)
        {
            throw new ArgumentException($"Method {options.Method}{(options.Gptq ? " with GPTQ" : "")} needs calibration text (--calib FILE).");
        }

        Report("calibration text", 0, 1);
        LlmTokenizer tokenizer = LlmTokenizer.Load(dir.Directory);
        IReadOnlyList<string> docs = TextCorpus.LoadDocuments(options.CalibrationFile);
        int[] stream = TextCorpus.TokenStream(docs, tokenizer, config.BosTokenId ?? tokenizer.BeginOfSequenceId, (long)options.CalibrationSamples * length * 4);
        Report("calibration text", 1, 1);
        return TextCorpus.SampleWindows(stream, options.CalibrationSamples, length, options.Seed);
    }

    /// <summary>Per layer and site (qkv, o, gate/up, down), the max |x| of each input channel over the calibration windows.</summary>
    private ChannelMax[][] CollectActivationMax(FloatModelTensors model, int[][] windows, ParallelRows parallel)
    {
        LlamaConfig c = model.Config;
        LlamaWeights baseWeights = model.ToWeights(parallel);
        var stats = new ChannelMax[c.LayerCount][];
        var observed = new LlamaLayerWeights[c.LayerCount];
        for (int i = 0; i < c.LayerCount; i++)
        {
            stats[i] = [new(c.HiddenSize), new(c.QueryWidth), new(c.HiddenSize), new(c.IntermediateSize)];
            LlamaLayerWeights l = baseWeights.Layers[i];
            ChannelMax[] s = stats[i];
            observed[i] = l with
            {
                Query = new ObservingLinear(l.Query, s[0].Observe),
                Output = new ObservingLinear(l.Output, s[1].Observe),
                Gate = new ObservingLinear(l.Gate, s[2].Observe),
                Down = new ObservingLinear(l.Down, s[3].Observe),
            };
        }

        var weights = new LlamaWeights(c, model.Embedding, observed, model.FinalNorm, baseWeights.LmHead);
        RunWindows(weights, windows, parallel, "activation statistics");
        return stats;
    }

    private void RunWindows(LlamaWeights weights, int[][] windows, ParallelRows parallel, string stage)
    {
        var engine = new CpuEngine(weights, parallel);
        var logits = new float[weights.Config.VocabularySize];
        for (int w = 0; w < windows.Length; w++)
        {
            Report(stage, w, windows.Length);
            using IInferenceSession session = engine.CreateSession(windows[w].Length);
            session.Forward(windows[w], logits);
        }

        Report(stage, windows.Length, windows.Length);
    }

    /// <summary>Folds the four smoothing vectors of one layer (factors from the unsmoothed weights); returns o_proj's online divisor.</summary>
    private static float[] FoldSmoothing(FloatLayerTensors l, ChannelMax[] stats, double alpha)
    {
        float[] sQkv = Smoothing.Factors(stats[0].Values, l.Query, alpha);
        float[] sOut = Smoothing.Factors(stats[1].Values, l.Output, alpha);
        float[] sFc1 = Smoothing.Factors(stats[2].Values, l.Up, alpha);
        float[] sDown = Smoothing.Factors(stats[3].Values, l.Down, alpha);

        Smoothing.Divide(l.AttentionNorm, sQkv);
        Smoothing.ScaleColumns(l.Query, sQkv);
        Smoothing.ScaleColumns(l.Key, sQkv);
        Smoothing.ScaleColumns(l.Value, sQkv);

        // GQA: v_proj's rows cannot absorb o_proj's smoothing, so o_proj's input is divided online.
        Smoothing.ScaleColumns(l.Output, sOut);

        Smoothing.Divide(l.MlpNorm, sFc1);
        Smoothing.ScaleColumns(l.Gate, sFc1);
        Smoothing.ScaleColumns(l.Up, sFc1);

        Smoothing.DivideRows(l.Up, sDown);
        Smoothing.ScaleColumns(l.Down, sDown);
        return sOut;
    }

    /// <summary>
    /// The rotation calibration pass (spec §3.7): the mean of the calibration windows' embeddings runs through the
    /// layers with activations and weights fake-quantized; each site searches its rotation on the first input it
    /// sees, so layer i's search sees the output of the already-quantized layers before it.
    /// </summary>
    private void SearchRotations(FloatModelTensors folded, SiteTransform[,] sites, int[][] windows, int length, ParallelRows parallel)
    {
        LlamaConfig c = folded.Config;
        int hidden = c.HiddenSize;
        var mean = new float[length * hidden];
        foreach (int[] window in windows)
        {
            for (int t = 0; t < length; t++)
            {
                System.Numerics.Tensors.TensorPrimitives.Add(mean.AsSpan(t * hidden, hidden), folded.Embedding.AsSpan(window[t] * hidden, hidden), mean.AsSpan(t * hidden, hidden));
            }
        }

        System.Numerics.Tensors.TensorPrimitives.Divide(mean, windows.Length, mean);
        var layers = new LlamaLayerWeights[c.LayerCount];
        for (int i = 0; i < c.LayerCount; i++)
        {
            layers[i] = FakeQuantLayer(folded.Layers[i], sites, i, c, quantizeWeights: true, parallel, hessians: null);
        }

        var weights = new LlamaWeights(c, folded.Embedding, layers, folded.FinalNorm, folded.LmHeadLinear(parallel));
        var session = new TransformerSession(weights, parallel, length);
        Report("rotation search", 0, 1);
        session.ForwardHidden(mean, length);
        Report("rotation search", 1, 1);
    }

    private LlamaLayerWeights FakeQuantLayer(FloatLayerTensors l, SiteTransform[,] sites, int i, LlamaConfig c, bool quantizeWeights, ParallelRows parallel, HessianAccumulator[]? hessians, bool quantizeActivations = true)
    {
        ILinear Make(SiteTransform site, float[] w, int rows, HessianAccumulator? h) =>
            new FakeQuantLinear(site, w, rows, options.ScaleRule, options.WeightScales, quantizeWeights, parallel, h, quantizeActivations);

        return new LlamaLayerWeights(
            l.AttentionNorm,
            Make(sites[i, 0], l.Query, c.QueryWidth, hessians?[0]),
            Make(sites[i, 0], l.Key, c.KeyValueWidth, null),
            Make(sites[i, 0], l.Value, c.KeyValueWidth, null),
            Make(sites[i, 1], l.Output, c.HiddenSize, hessians?[1]),
            l.MlpNorm,
            Make(sites[i, 2], l.Gate, c.IntermediateSize, hessians?[2]),
            Make(sites[i, 2], l.Up, c.IntermediateSize, null),
            Make(sites[i, 3], l.Down, c.HiddenSize, hessians?[3]));
    }

    private QuantizedLayer QuantizeLayer(FloatLayerTensors l, SiteTransform[,] sites, int i, LlamaConfig c)
    {
        Mxfp4Matrix Q(SiteTransform site, float[] w, int rows) =>
            WeightQuantizer.Quantize(site.RotateWeight(w, rows), rows, site.Channels, options.ScaleRule, options.WeightScales);

        return Assemble(l, sites, i, [
            Q(sites[i, 0], l.Query, c.QueryWidth), Q(sites[i, 0], l.Key, c.KeyValueWidth), Q(sites[i, 0], l.Value, c.KeyValueWidth),
            Q(sites[i, 1], l.Output, c.HiddenSize),
            Q(sites[i, 2], l.Gate, c.IntermediateSize), Q(sites[i, 2], l.Up, c.IntermediateSize),
            Q(sites[i, 3], l.Down, c.HiddenSize)]);
    }

    /// <summary>
    /// GPTQ for layer <paramref name="i"/>: the calibration windows run through the already-quantized layers
    /// (the real W4A4 engine layers) and this layer's fake-quant activations, collecting one Hessian per site from
    /// the rotated, MXFP4-quantized inputs (spec §3.9); then each weight is quantized against its site's Hessian.
    /// </summary>
    private QuantizedLayer QuantizeLayerGptq(FloatModelTensors folded, QuantizedLayer[] done, SiteTransform[,] sites, int i, int[][] windows, ParallelRows parallel)
    {
        LlamaConfig c = folded.Config;
        FloatLayerTensors l = folded.Layers[i];
        HessianAccumulator[] h = [.. Enumerable.Range(0, 4).Select(s => new HessianAccumulator(sites[i, s].PaddedChannels))];
        // Layers before i run as the real W4A4 engine layers; layers after i are not needed for layer i's inputs.
        var partialConfig = c with { LayerCount = i + 1 };
        var prefix = new QuantizedModel(c with { LayerCount = i }, new QuantizationConfig { ActivationScaleRule = options.ScaleRule }, folded.Embedding, done[..i], folded.FinalNorm, folded.LmHead);
        LlamaWeights quantizedPrefix = QuantizedModelLoader.Build(prefix, parallel);
        var layers = quantizedPrefix.Layers.Append(FakeQuantLayer(l, sites, i, c, quantizeWeights: false, parallel, h)).ToArray();
        var weights = new LlamaWeights(partialConfig, folded.Embedding, layers, folded.FinalNorm, folded.LmHeadLinear(parallel));
        RunWindows(weights, windows, parallel, $"GPTQ statistics, layer {i}");

        Mxfp4Matrix G(SiteTransform site, float[] w, int rows, HessianAccumulator hessian) =>
            GptqQuantizer.Quantize(site.RotateWeight(w, rows), rows, site.Channels, hessian, options.ScaleRule);

        return Assemble(l, sites, i, [
            G(sites[i, 0], l.Query, c.QueryWidth, h[0]), G(sites[i, 0], l.Key, c.KeyValueWidth, h[0]), G(sites[i, 0], l.Value, c.KeyValueWidth, h[0]),
            G(sites[i, 1], l.Output, c.HiddenSize, h[1]),
            G(sites[i, 2], l.Gate, c.IntermediateSize, h[2]), G(sites[i, 2], l.Up, c.IntermediateSize, h[2]),
            G(sites[i, 3], l.Down, c.HiddenSize, h[3])]);
    }

    private static QuantizedLayer Assemble(FloatLayerTensors l, SiteTransform[,] sites, int i, Mxfp4Matrix[] m) =>
        new(l.AttentionNorm, m[0], m[1], m[2], m[3], l.MlpNorm, m[4], m[5], m[6],
            sites[i, 0].ActivationTransform(), sites[i, 1].ActivationTransform(), sites[i, 2].ActivationTransform(), sites[i, 3].ActivationTransform());

    /// <summary>
    /// The float model with every transform applied but nothing quantized: each linear input is divided and rotated
    /// online and meets rotated weights. Its logits equal the original model's to rounding (what the tests check).
    /// </summary>
    internal LlamaWeights TransformedFloatWeights(TransformedModel t, ParallelRows parallel)
    {
        LlamaConfig c = t.Folded.Config;
        var layers = new LlamaLayerWeights[c.LayerCount];
        for (int i = 0; i < c.LayerCount; i++)
        {
            layers[i] = FakeQuantLayer(t.Folded.Layers[i], t.Sites, i, c, quantizeWeights: false, parallel, hessians: null, quantizeActivations: false);
        }

        return new LlamaWeights(c, t.Folded.Embedding, layers, t.Folded.FinalNorm, t.Folded.LmHeadLinear(parallel));
    }

    private void Report(string stage, int done, int total) => progress?.Report(new QuantizationProgress(stage, done, total));
}

/// <summary>The state between transform selection and weight quantization.</summary>
/// <param name="Original">The float model as loaded.</param>
/// <param name="Folded">A copy with smoothing folded into norms and weights.</param>
/// <param name="Sites">Per layer, the q/k/v, o, gate/up and down transforms.</param>
/// <param name="Windows">The calibration windows.</param>
internal sealed record TransformedModel(FloatModelTensors Original, FloatModelTensors Folded, SiteTransform[,] Sites, int[][] Windows);
