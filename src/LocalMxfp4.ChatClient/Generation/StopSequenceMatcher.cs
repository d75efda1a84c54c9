using System.Text;

namespace LocalMxfp4.ChatClient.Generation;

/// <summary>
/// Finds stop sequences in streamed text, whatever the token boundaries. Text that could be the start of a stop
/// sequence is held back until it either completes the sequence (then it is dropped, with everything after it) or
/// turns out not to (then it is released), so the stop text is never emitted.
/// </summary>
internal sealed class StopSequenceMatcher
{
    private readonly string[] _stops;
    private readonly StringBuilder _held = new();

    public StopSequenceMatcher(IReadOnlyList<string> stops)
    {
        _stops = [.. stops];
    }

    /// <summary>The stop sequence found, once one is.</summary>
    public string? Matched { get; private set; }

    /// <summary>Adds decoded text; returns the text that is safe to emit now.</summary>
    public string Push(string text)
    {
        if (Matched is not null)
        {
            return string.Empty;
        }

        if (_stops.Length == 0)
        {
            return text;
        }

        if (text.Length == 0 && _held.Length == 0)
        {
            return string.Empty;
        }

        _held.Append(text);
        string buffer = _held.ToString();
        int first = -1;
        foreach (string stop in _stops)
        {
            int at = buffer.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (first < 0 || at < first))
            {
                first = at;
                Matched = stop;
            }
        }

        _held.Clear();
        if (first >= 0)
        {
            return buffer[..first];
        }

        int hold = 0;
        foreach (string stop in _stops)
        {
            for (int k = Math.Min(stop.Length - 1, buffer.Length); k > hold; k--)
            {
                if (buffer.AsSpan(buffer.Length - k).SequenceEqual(stop.AsSpan(0, k)))
                {
                    hold = k;
                    break;
                }
            }
        }

        _held.Append(buffer, buffer.Length - hold, hold);
        return buffer[..^hold];
    }

    /// <summary>Releases held-back text at the end of generation (it did not complete a stop sequence).</summary>
    public string Flush()
    {
        string rest = Matched is null ? _held.ToString() : string.Empty;
        _held.Clear();
        return rest;
    }
}
