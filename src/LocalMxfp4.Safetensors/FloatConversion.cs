using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using LocalMxfp4.Numerics;

namespace LocalMxfp4.Safetensors;

/// <summary>Widening of stored floating-point tensors to float32.</summary>
internal static class FloatConversion
{
    internal static int CheckedElementCount(TensorInfo info)
    {
        if (info.ElementCount > Array.MaxLength)
        {
            throw new NotSupportedException(
                $"Tensor '{info.Name}' in '{info.FilePath}' has {info.ElementCount} elements, more than one float array can hold.");
        }

        return (int)info.ElementCount;
    }

    internal static void ToSingle(TensorInfo info, ReadOnlySpan<byte> bytes, Span<float> destination)
    {
        if (info.DType is not (SafetensorsDType.F32 or SafetensorsDType.F16 or SafetensorsDType.BF16 or SafetensorsDType.F64))
        {
            throw new SafetensorsDTypeNotSupportedException(info.FilePath, info.Name, info.DType, "conversion to float32 (only F32, F16, BF16 and F64 do)");
        }

        if (destination.Length != info.ElementCount)
        {
            throw new ArgumentException(
                $"Destination holds {destination.Length} floats but tensor '{info.Name}' in '{info.FilePath}' has {info.ElementCount} elements.",
                nameof(destination));
        }

        // The mapping may place data at any byte offset; MemoryMarshal.Cast does not require alignment and
        // the loads below are unaligned-safe on every platform .NET supports.
        switch (info.DType)
        {
            case SafetensorsDType.F32:
                bytes.CopyTo(MemoryMarshal.AsBytes(destination));
                break;
            case SafetensorsDType.BF16:
                BFloat16.ToSingle(MemoryMarshal.Cast<byte, ushort>(bytes), destination);
                break;
            case SafetensorsDType.F16:
                TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(bytes), destination);
                break;
            default:
                ReadOnlySpan<double> source = MemoryMarshal.Cast<byte, double>(bytes);
                for (int i = 0; i < source.Length; i++)
                {
                    destination[i] = (float)source[i];
                }

                break;
        }
    }
}
