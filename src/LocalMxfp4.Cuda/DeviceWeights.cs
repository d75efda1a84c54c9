using LocalMxfp4.Models.Quantized;
using LocalMxfp4.Numerics.Mxfp4;

namespace LocalMxfp4.Cuda;

/// <summary>
/// MXFP4 weights on the device: packed nibbles <c>[Rows, PaddedBlocks, 16]</c> and E8M0 scales <c>[Rows, PaddedBlocks]</c>,
/// rows padded with zero blocks to a multiple of 4 blocks (so every kernel reads whole 4-block groups and the scale
/// words of 4 blocks are aligned). Several matrices sharing an input are stacked (q|k|v, gate|up).
/// </summary>
internal sealed class DeviceLinear : IDisposable
{
    private DeviceLinear(DeviceBuffer packed, DeviceBuffer scales, int rows, int columns, int paddedBlocks)
    {
        Packed = packed;
        Scales = scales;
        Rows = rows;
        Columns = columns;
        PaddedBlocks = paddedBlocks;
    }

    public DeviceBuffer Packed { get; }

    public DeviceBuffer Scales { get; }

    public int Rows { get; }

    public int Columns { get; }

    public int PaddedBlocks { get; }

    /// <summary>Bytes a product streams (nibbles and scales).</summary>
    public long Bytes => Packed.Bytes + Scales.Bytes;

    /// <summary>Blocks per row padded to a multiple of 4.</summary>
    public static int PadBlocks(int columns) => ((columns + 31) / 32 + 3) / 4 * 4;

    /// <summary>Uploads <paramref name="parts"/> (same column count) stacked by rows.</summary>
    public static DeviceLinear Upload(CudaContext context, params Mxfp4Matrix[] parts)
    {
        int columns = parts[0].Columns, blocks = parts[0].Blocks, padded = PadBlocks(columns);
        if (parts.Any(p => p.Columns != columns))
        {
            throw new ArgumentException("Stacked matrices must share their input width.", nameof(parts));
        }

        int rows = parts.Sum(p => p.Rows);
        DeviceBuffer packed = DeviceBuffer.Allocate(context, (long)rows * padded * 16);
        DeviceBuffer? scales = null;
        try
        {
            scales = DeviceBuffer.Allocate(context, (long)rows * padded);
            long row = 0;
            foreach (Mxfp4Matrix m in parts)
            {
                if (blocks == padded)
                {
                    packed.CopyFrom<byte>(m.Packed, row * padded * 16);
                    scales.CopyFrom<byte>(m.Scales, row * padded);
                }
                else
                {
                    var p = new byte[(long)m.Rows * padded * 16];
                    var s = new byte[(long)m.Rows * padded];
                    for (int r = 0; r < m.Rows; r++)
                    {
                        m.Packed.AsSpan(r * blocks * 16, blocks * 16).CopyTo(p.AsSpan(r * padded * 16));
                        m.Scales.AsSpan(r * blocks, blocks).CopyTo(s.AsSpan(r * padded));
                    }

                    packed.CopyFrom<byte>(p, row * padded * 16);
                    scales.CopyFrom<byte>(s, row * padded);
                }

                row += m.Rows;
            }

            return new DeviceLinear(packed, scales, rows, columns, padded);
        }
        catch
        {
            // Out of memory half-way (the scales, say) must not strand the nibbles already allocated.
            packed.Dispose();
            scales?.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        Packed.Dispose();
        Scales.Dispose();
    }
}

/// <summary>An online input transform on the device: one shared 32×32 matrix or <c>[Blocks, 32, 32]</c>.</summary>
internal sealed class DeviceTransform : IDisposable
{
    private DeviceTransform(DeviceBuffer matrices, int blocks, bool shared)
    {
        Matrices = matrices;
        Blocks = blocks;
        Shared = shared;
    }

    public DeviceBuffer Matrices { get; }

    public int Blocks { get; }

    public bool Shared { get; }

    public static DeviceTransform? Upload(CudaContext context, InputTransform? transform) =>
        transform is null ? null : new DeviceTransform(DeviceBuffer.Upload<float>(context, transform.Matrices), transform.Blocks, transform.IsShared);

    public void Dispose() => Matrices.Dispose();
}

/// <summary>One decoder layer on the device.</summary>
internal sealed class DeviceLayer : IDisposable
{
    public DeviceLayer(CudaContext context, QuantizedLayer layer)
    {
        var owned = new List<IDisposable>();
        try
        {
            AttentionNorm = Track(DeviceBuffer.Upload<float>(context, layer.AttentionNorm));
            MlpNorm = Track(DeviceBuffer.Upload<float>(context, layer.MlpNorm));
            Qkv = Track(DeviceLinear.Upload(context, layer.Query, layer.Key, layer.Value));
            Output = Track(DeviceLinear.Upload(context, layer.Output));
            GateUp = Track(DeviceLinear.Upload(context, layer.Gate, layer.Up));
            Down = Track(DeviceLinear.Upload(context, layer.Down));
            QkvTransform = TrackOrNull(DeviceTransform.Upload(context, layer.QkvTransform));
            OutputTransform = TrackOrNull(DeviceTransform.Upload(context, layer.OutputTransform));
            GateUpTransform = TrackOrNull(DeviceTransform.Upload(context, layer.GateUpTransform));
            DownTransform = TrackOrNull(DeviceTransform.Upload(context, layer.DownTransform));
        }
        catch
        {
            foreach (IDisposable d in owned)
            {
                d.Dispose();
            }

            throw;
        }

        T Track<T>(T item)
            where T : IDisposable
        {
            owned.Add(item);
            return item;
        }

        T? TrackOrNull<T>(T? item)
            where T : class, IDisposable
        {
            if (item is not null)
            {
                owned.Add(item);
            }

            return item;
        }
    }

    public DeviceBuffer AttentionNorm { get; }

    public DeviceBuffer MlpNorm { get; }

    public DeviceLinear Qkv { get; }

    public DeviceLinear Output { get; }

    public DeviceLinear GateUp { get; }

    public DeviceLinear Down { get; }

    public DeviceTransform? QkvTransform { get; }

    public DeviceTransform? OutputTransform { get; }

    public DeviceTransform? GateUpTransform { get; }

    public DeviceTransform? DownTransform { get; }

    public long WeightBytes => Qkv.Bytes + Output.Bytes + GateUp.Bytes + Down.Bytes;

    /// <summary>Everything this layer holds on the device (what <see cref="CudaMemoryRequirements.Weights"/> predicts).</summary>
    public long AllocatedBytes => WeightBytes + AttentionNorm.Bytes + MlpNorm.Bytes
        + (QkvTransform?.Matrices.Bytes ?? 0) + (OutputTransform?.Matrices.Bytes ?? 0) + (GateUpTransform?.Matrices.Bytes ?? 0) + (DownTransform?.Matrices.Bytes ?? 0);

    public void Dispose()
    {
        AttentionNorm.Dispose();
        MlpNorm.Dispose();
        Qkv.Dispose();
        Output.Dispose();
        GateUp.Dispose();
        Down.Dispose();
        QkvTransform?.Dispose();
        OutputTransform?.Dispose();
        GateUpTransform?.Dispose();
        DownTransform?.Dispose();
    }
}
