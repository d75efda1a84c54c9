namespace LocalMxfp4.Models.Configuration;

/// <summary>
/// LLaMA-3.1's <c>rope_scaling</c> of type <c>llama3</c>: long wavelengths are slowed down by
/// <see cref="Factor"/>, short ones kept, and the band between interpolated smoothly.
/// </summary>
/// <param name="Factor">How much the low-frequency components are divided by.</param>
/// <param name="LowFrequencyFactor">Wavelengths above <c>original / low</c> are fully scaled.</param>
/// <param name="HighFrequencyFactor">Wavelengths below <c>original / high</c> are untouched.</param>
/// <param name="OriginalMaxPositions">The context length the base model was trained with.</param>
public sealed record RopeScaling(double Factor, double LowFrequencyFactor, double HighFrequencyFactor, int OriginalMaxPositions)
{
    /// <summary>Applies the llama3 rule to one inverse frequency.</summary>
    public double Scale(double inverseFrequency)
    {
        double wavelength = 2 * Math.PI / inverseFrequency;
        double lowFrequencyWavelength = OriginalMaxPositions / LowFrequencyFactor;
        double highFrequencyWavelength = OriginalMaxPositions / HighFrequencyFactor;
        if (wavelength < highFrequencyWavelength)
        {
            return inverseFrequency;
        }

        if (wavelength > lowFrequencyWavelength)
        {
            return inverseFrequency / Factor;
        }

        double smooth = ((OriginalMaxPositions / wavelength) - LowFrequencyFactor) / (HighFrequencyFactor - LowFrequencyFactor);
        return ((1 - smooth) * inverseFrequency / Factor) + (smooth * inverseFrequency);
    }
}
