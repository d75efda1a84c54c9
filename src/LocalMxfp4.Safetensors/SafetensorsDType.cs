namespace LocalMxfp4.Safetensors;

/// <summary>The element types a safetensors header may name in a tensor's <c>dtype</c> field.</summary>
public enum SafetensorsDType
{
    /// <summary><c>BOOL</c>: one byte per element, 0 or 1.</summary>
    Bool,

    /// <summary><c>U8</c>: unsigned 8-bit integer.</summary>
    U8,

    /// <summary><c>I8</c>: signed 8-bit integer.</summary>
    I8,

    /// <summary><c>F8_E5M2</c>: 8-bit float, 5 exponent and 2 mantissa bits.</summary>
    F8E5M2,

    /// <summary><c>F8_E4M3</c>: 8-bit float, 4 exponent and 3 mantissa bits.</summary>
    F8E4M3,

    /// <summary><c>F8_E8M0</c>: 8-bit power-of-two scale (the shared exponent of MX formats).</summary>
    F8E8M0,

    /// <summary><c>I16</c>: signed 16-bit integer.</summary>
    I16,

    /// <summary><c>U16</c>: unsigned 16-bit integer.</summary>
    U16,

    /// <summary><c>F16</c>: IEEE-754 half precision.</summary>
    F16,

    /// <summary><c>BF16</c>: bfloat16, the upper half of a float32.</summary>
    BF16,

    /// <summary><c>I32</c>: signed 32-bit integer.</summary>
    I32,

    /// <summary><c>U32</c>: unsigned 32-bit integer.</summary>
    U32,

    /// <summary><c>F32</c>: IEEE-754 single precision.</summary>
    F32,

    /// <summary><c>F64</c>: IEEE-754 double precision.</summary>
    F64,

    /// <summary><c>I64</c>: signed 64-bit integer.</summary>
    I64,

    /// <summary><c>U64</c>: unsigned 64-bit integer.</summary>
    U64,

    /// <summary>
    /// <c>F4</c>: 4-bit float (E2M1), two elements packed per byte. A tensor's byte length is its element
    /// count divided by two, and the element count must be even (the rule of the reference implementation,
    /// which rejects tensors that do not end on a byte boundary).
    /// </summary>
    F4,
}

/// <summary>Names and sizes of <see cref="SafetensorsDType"/> values.</summary>
public static class SafetensorsDTypes
{
    /// <summary>
    /// Bytes per element. <see cref="SafetensorsDType.F4"/> has no whole-byte size and throws; use
    /// <see cref="BitsPerElement"/> or <see cref="ByteLength"/> for code that must handle every dtype.
    /// </summary>
    /// <exception cref="ArgumentException">The dtype is <see cref="SafetensorsDType.F4"/> or not defined.</exception>
    public static int SizeInBytes(SafetensorsDType dtype)
    {
        int bits = BitsPerElement(dtype);
        return bits % 8 == 0
            ? bits / 8
            : throw new ArgumentException($"{ToName(dtype)} packs {8 / bits} elements per byte and has no whole-byte element size.", nameof(dtype));
    }

    /// <summary>Bits per element: 4 for <see cref="SafetensorsDType.F4"/>, otherwise 8 × the byte size.</summary>
    /// <exception cref="ArgumentException">The dtype is not defined.</exception>
    public static int BitsPerElement(SafetensorsDType dtype) => dtype switch
    {
        SafetensorsDType.F4 => 4,
        SafetensorsDType.Bool or SafetensorsDType.U8 or SafetensorsDType.I8 or SafetensorsDType.F8E5M2
            or SafetensorsDType.F8E4M3 or SafetensorsDType.F8E8M0 => 8,
        SafetensorsDType.I16 or SafetensorsDType.U16 or SafetensorsDType.F16 or SafetensorsDType.BF16 => 16,
        SafetensorsDType.I32 or SafetensorsDType.U32 or SafetensorsDType.F32 => 32,
        SafetensorsDType.F64 or SafetensorsDType.I64 or SafetensorsDType.U64 => 64,
        _ => throw new ArgumentException($"Undefined safetensors dtype value {(int)dtype}.", nameof(dtype)),
    };

    /// <summary>
    /// Bytes occupied by <paramref name="elementCount"/> elements, or false when the count is negative,
    /// the product overflows a <see cref="long"/>, or a packed sub-byte dtype would end mid-byte.
    /// </summary>
    public static bool TryGetByteLength(SafetensorsDType dtype, long elementCount, out long byteLength)
    {
        byteLength = 0;
        if (elementCount < 0)
        {
            return false;
        }

        int bits = BitsPerElement(dtype);
        if (bits < 8)
        {
            long perByte = 8 / bits;
            if (elementCount % perByte != 0)
            {
                return false;
            }

            byteLength = elementCount / perByte;
            return true;
        }

        long size = bits / 8;
        if (elementCount > long.MaxValue / size)
        {
            return false;
        }

        byteLength = elementCount * size;
        return true;
    }

    /// <summary>Bytes occupied by <paramref name="elementCount"/> elements of <paramref name="dtype"/>.</summary>
    /// <exception cref="ArgumentException">See <see cref="TryGetByteLength"/> for when no length exists.</exception>
    public static long ByteLength(SafetensorsDType dtype, long elementCount) =>
        TryGetByteLength(dtype, elementCount, out long length)
            ? length
            : throw new ArgumentException(
                $"{elementCount} elements of {ToName(dtype)} do not occupy a whole, representable number of bytes.",
                nameof(elementCount));

    /// <summary>Parses the exact (case-sensitive) header spelling, e.g. <c>"BF16"</c> or <c>"F8_E4M3"</c>.</summary>
    public static bool TryParse(string name, out SafetensorsDType dtype)
    {
        ArgumentNullException.ThrowIfNull(name);
        (bool ok, dtype) = name switch
        {
            "BOOL" => (true, SafetensorsDType.Bool),
            "U8" => (true, SafetensorsDType.U8),
            "I8" => (true, SafetensorsDType.I8),
            "F8_E5M2" => (true, SafetensorsDType.F8E5M2),
            "F8_E4M3" => (true, SafetensorsDType.F8E4M3),
            "F8_E8M0" => (true, SafetensorsDType.F8E8M0),
            "I16" => (true, SafetensorsDType.I16),
            "U16" => (true, SafetensorsDType.U16),
            "F16" => (true, SafetensorsDType.F16),
            "BF16" => (true, SafetensorsDType.BF16),
            "I32" => (true, SafetensorsDType.I32),
            "U32" => (true, SafetensorsDType.U32),
            "F32" => (true, SafetensorsDType.F32),
            "F64" => (true, SafetensorsDType.F64),
            "I64" => (true, SafetensorsDType.I64),
            "U64" => (true, SafetensorsDType.U64),
            "F4" => (true, SafetensorsDType.F4),
            _ => (false, default(SafetensorsDType)),
        };
        return ok;
    }

    /// <summary>The header spelling of a dtype, e.g. <c>"BF16"</c>.</summary>
    /// <exception cref="ArgumentException">The dtype is not defined.</exception>
    public static string ToName(SafetensorsDType dtype) => dtype switch
    {
        SafetensorsDType.Bool => "BOOL",
        SafetensorsDType.U8 => "U8",
        SafetensorsDType.I8 => "I8",
        SafetensorsDType.F8E5M2 => "F8_E5M2",
        SafetensorsDType.F8E4M3 => "F8_E4M3",
        SafetensorsDType.F8E8M0 => "F8_E8M0",
        SafetensorsDType.I16 => "I16",
        SafetensorsDType.U16 => "U16",
        SafetensorsDType.F16 => "F16",
        SafetensorsDType.BF16 => "BF16",
        SafetensorsDType.I32 => "I32",
        SafetensorsDType.U32 => "U32",
        SafetensorsDType.F32 => "F32",
        SafetensorsDType.F64 => "F64",
        SafetensorsDType.I64 => "I64",
        SafetensorsDType.U64 => "U64",
        SafetensorsDType.F4 => "F4",
        _ => throw new ArgumentException($"Undefined safetensors dtype value {(int)dtype}.", nameof(dtype)),
    };
}
