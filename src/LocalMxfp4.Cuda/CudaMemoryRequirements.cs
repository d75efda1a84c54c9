using System.Globalization;
using LocalMxfp4.Models.Configuration;
using LocalMxfp4.Models.Quantized;

namespace LocalMxfp4.Cuda;

/// <summary>
/// GPU memory the CUDA engine allocates, computed from the model before anything is uploaded: to size a model or a context
/// against a card, and to say in an out-of-memory error how much was needed.
/// </summary>
public static class CudaMemoryRequirements
{
    /// <summary>
    /// Bytes a <see cref="CudaEngine"/> uploads for <paramref name="model"/>: the MXFP4 matrices as the kernels read them
    /// (q|k|v and gate|up stacked, rows padded to whole 4-block groups, nibbles and scales), the norms and online
    /// transforms as float32, and the embedding and lm_head as bf16.
    /// </summary>
    public static long Weights(QuantizedModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        long bytes = (model.Embedding.LongLength * 2) + ((model.LmHead?.LongLength ?? 0) * 2) + (model.FinalNorm.LongLength * 4);
        foreach (QuantizedLayer l in model.Layers)
        {
            bytes += Linear(l.Query.Rows + l.Key.Rows + l.Value.Rows, l.Query.Columns)
                + Linear(l.Output.Rows, l.Output.Columns)
                + Linear(l.Gate.Rows + l.Up.Rows, l.Gate.Columns)
                + Linear(l.Down.Rows, l.Down.Columns);
            bytes += (l.AttentionNorm.LongLength + l.MlpNorm.LongLength) * 4;
            bytes += Transform(l.QkvTransform) + Transform(l.OutputTransform) + Transform(l.GateUpTransform) + Transform(l.DownTransform);
        }

        return bytes;
    }

    /// <summary>Bytes of one session's KV cache: keys and values of every layer and key/value head for <paramref name="contextLength"/> positions.</summary>
    public static long KvCache(LlamaConfig config, int contextLength, CudaKvCacheFormat format)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentOutOfRangeException.ThrowIfNegative(contextLength);
        int element = format == CudaKvCacheFormat.BFloat16 ? 2 : 4;
        return 2L * config.LayerCount * config.KeyValueHeadCount * config.HeadDim * contextLength * element;
    }

    /// <summary>Bytes for people: MiB below 1 GiB, else GiB with two decimals.</summary>
    internal static string Format(long bytes) => bytes >= 1L << 30
        ? (bytes / (double)(1L << 30)).ToString("0.00 'GiB'", CultureInfo.InvariantCulture)
        : (bytes / (double)(1L << 20)).ToString("0.0 'MiB'", CultureInfo.InvariantCulture);

    private static long Linear(long rows, int columns) => rows * DeviceLinear.PadBlocks(columns) * 17;

    private static long Transform(InputTransform? transform) => (transform?.Matrices.LongLength ?? 0) * 4;
}
