using System.Collections.ObjectModel;

namespace LocalMxfp4.Safetensors;

/// <summary>One tensor's header entry, validated against the file it came from.</summary>
public sealed class TensorInfo
{
    internal TensorInfo(string name, SafetensorsDType dtype, long[] shape, long elementCount, long byteLength, long dataOffset, string filePath)
    {
        Name = name;
        DType = dtype;
        Shape = new ReadOnlyCollection<long>(shape);
        ElementCount = elementCount;
        ByteLength = byteLength;
        DataOffset = dataOffset;
        FilePath = filePath;
    }

    /// <summary>The tensor's name as written in the header.</summary>
    public string Name { get; }

    /// <summary>The element type.</summary>
    public SafetensorsDType DType { get; }

    /// <summary>Dimensions, outermost first; empty for a scalar.</summary>
    public IReadOnlyList<long> Shape { get; }

    /// <summary>Product of <see cref="Shape"/> (1 for a scalar, 0 when any dimension is 0).</summary>
    public long ElementCount { get; }

    /// <summary>Bytes of data, <c>end − begin</c> of the header's <c>data_offsets</c>.</summary>
    public long ByteLength { get; }

    /// <summary>Start of the data relative to the start of the data section (not of the file).</summary>
    public long DataOffset { get; }

    /// <summary>Full path of the file that holds the data.</summary>
    public string FilePath { get; }

    /// <summary>A short description such as <c>model.norm.weight BF16[64]</c>.</summary>
    public override string ToString() => $"{Name} {SafetensorsDTypes.ToName(DType)}[{string.Join(", ", Shape)}]";
}
