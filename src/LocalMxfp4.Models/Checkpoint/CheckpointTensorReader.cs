using LocalMxfp4.Safetensors;

namespace LocalMxfp4.Models.Checkpoint;

/// <summary>Reads tensors a model needs, checking presence, dtype and shape against config.json, with errors naming the file and tensor.</summary>
public sealed class CheckpointTensorReader(SafetensorsCheckpoint checkpoint)
{
    /// <summary>The checkpoint read from.</summary>
    public SafetensorsCheckpoint Checkpoint { get; } = checkpoint ?? throw new ArgumentNullException(nameof(checkpoint));

    /// <summary>A float tensor (F32, F16 or BF16) of exactly <paramref name="shape"/>, as float32.</summary>
    public float[] Float(string name, params int[] shape)
    {
        TensorInfo info = Get(name);
        if (info.DType is not (SafetensorsDType.F32 or SafetensorsDType.F16 or SafetensorsDType.BF16))
        {
            throw new ModelLoadException(info.FilePath, name, $"dtype {SafetensorsDTypes.ToName(info.DType)} is not a float type (F32, F16, BF16).");
        }

        ExpectShape(info, [.. shape.Select(d => (long)d)]);
        return Checkpoint.ReadSingle(name);
    }

    /// <summary>The tensor's description; a missing tensor is a <see cref="ModelLoadException"/>.</summary>
    public TensorInfo Get(string name) =>
        Checkpoint.TryGetTensor(name, out TensorInfo info) ? info : throw new ModelLoadException(Checkpoint.Path, name, "missing from the checkpoint.");

    /// <summary>Throws unless <paramref name="info"/> has exactly <paramref name="shape"/>.</summary>
    public static void ExpectShape(TensorInfo info, long[] shape)
    {
        ArgumentNullException.ThrowIfNull(info);
        if (!info.Shape.SequenceEqual(shape))
        {
            throw new ModelLoadException(info.FilePath, info.Name, $"shape [{string.Join(", ", info.Shape)}] does not match config.json, which implies [{string.Join(", ", shape)}].");
        }
    }
}
