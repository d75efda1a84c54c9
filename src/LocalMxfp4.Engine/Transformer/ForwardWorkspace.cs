using LocalMxfp4.Engine.Attention;
using LocalMxfp4.Models.Configuration;

namespace LocalMxfp4.Engine.Transformer;

/// <summary>
/// The scratch memory of forward steps: activations of every row, RoPE tables, the step's row layout. One caller uses
/// a workspace at a time; buffers grow to the largest step seen and are then reused.
/// </summary>
public sealed class ForwardWorkspace
{
    private readonly LlamaConfig _c;

    /// <summary>Creates an empty workspace for <paramref name="config"/>.</summary>
    public ForwardWorkspace(LlamaConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        _c = config;
    }

    /// <summary>Rows the buffers hold now.</summary>
    public int Capacity { get; private set; }

    internal StepRows Rows { get; } = new();

    internal float[] X { get; private set; } = [];

    internal float[] Normed { get; private set; } = [];

    internal float[] Q { get; private set; } = [];

    internal float[] K { get; private set; } = [];

    internal float[] V { get; private set; } = [];

    internal float[] Attention { get; private set; } = [];

    internal float[] Projected { get; private set; } = [];

    internal float[] Gate { get; private set; } = [];

    internal float[] Up { get; private set; } = [];

    internal float[] Scratch { get; private set; } = [];

    internal float[] Cos { get; private set; } = [];

    internal float[] Sin { get; private set; } = [];

    /// <summary>Final-normed rows whose logits are wanted, gathered contiguously for the lm_head.</summary>
    internal float[] HeadInput { get; private set; } = [];

    /// <summary>Makes room for <paramref name="rows"/> rows.</summary>
    internal void Ensure(int rows)
    {
        if (rows <= Capacity)
        {
            return;
        }

        int n = Math.Max(rows, Capacity * 2);
        X = new float[n * _c.HiddenSize];
        Normed = new float[n * _c.HiddenSize];
        Q = new float[n * _c.QueryWidth];
        K = new float[n * _c.KeyValueWidth];
        V = new float[n * _c.KeyValueWidth];
        Attention = new float[n * _c.QueryWidth];
        Projected = new float[n * _c.HiddenSize];
        Gate = new float[n * _c.IntermediateSize];
        Up = new float[n * _c.IntermediateSize];
        Scratch = new float[n * _c.IntermediateSize];
        Cos = new float[n * (_c.HeadDim / 2)];
        Sin = new float[n * (_c.HeadDim / 2)];
        HeadInput = new float[n * _c.HiddenSize];
        Capacity = n;
    }
}
