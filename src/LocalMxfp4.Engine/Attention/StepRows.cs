namespace LocalMxfp4.Engine.Attention;

/// <summary>
/// The rows of one forward step: for every token row, the sequence it belongs to, its position and that sequence's
/// block table. Reused from step to step (no allocation once its arrays have grown).
/// </summary>
internal sealed class StepRows
{
    private ReadOnlyMemory<int>[] _tables = new ReadOnlyMemory<int>[4];
    private int[] _sequence = new int[16];

    /// <summary>Rows in the step.</summary>
    public int Count { get; private set; }

    /// <summary>Each row's position in its sequence.</summary>
    public int[] Position { get; private set; } = new int[16];

    /// <summary>The largest position of the step.</summary>
    public int MaxPosition { get; private set; }

    /// <summary>Starts a step of <paramref name="rows"/> rows over <paramref name="sequences"/> sequences.</summary>
    public void Reset(int rows, int sequences)
    {
        if (Position.Length < rows)
        {
            Position = new int[rows];
            _sequence = new int[rows];
        }

        if (_tables.Length < sequences)
        {
            _tables = new ReadOnlyMemory<int>[sequences];
        }

        Count = 0;
        MaxPosition = 0;
    }

    /// <summary>Appends the <paramref name="tokens"/> rows of sequence <paramref name="index"/>, starting at <paramref name="position"/>.</summary>
    public void Add(int index, int position, int tokens, ReadOnlyMemory<int> table)
    {
        _tables[index] = table;
        for (int t = 0; t < tokens; t++)
        {
            Position[Count] = position + t;
            _sequence[Count] = index;
            Count++;
        }

        MaxPosition = Math.Max(MaxPosition, position + tokens - 1);
    }

    /// <summary>The block table of row <paramref name="row"/>'s sequence.</summary>
    public ReadOnlySpan<int> Table(int row) => _tables[_sequence[row]].Span;
}
