namespace LocalMxfp4.Numerics.Mxfp4;

/// <summary>
/// How the shared E8M0 exponent of a 32-element block is chosen from the block's largest magnitude.
/// Every rule produces a standard E8M0 byte, so any MXFP4 decoder reads the result.
/// </summary>
public enum ScaleRule
{
    /// <summary>OCP MX v1.0: <c>floor(log2 amax) − 2</c>. Values in (6, 8)·scale saturate to 6.</summary>
    Floor = 0,

    /// <summary>amax's mantissa is first rounded to one bit (m ≥ 1.75 moves to the next binade), then Floor.</summary>
    Even = 1,

    /// <summary><c>ceil(log2(amax / 6))</c>: the block maximum never clips, small values lose resolution.</summary>
    RoundUp = 2,
}
