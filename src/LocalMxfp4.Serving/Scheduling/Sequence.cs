using System.Diagnostics;
using LocalMxfp4.Serving.Generation;

namespace LocalMxfp4.Serving.Scheduling;

/// <summary>Where a sequence is in its life.</summary>
internal enum SequenceState
{
    Waiting,
    Running,
    Finished,
}

/// <summary>
/// One request inside the engine loop: its tokens (prompt, then every sampled token), how many of them have keys and
/// values in KV memory, the memory it holds, and its timings. Touched only by the loop thread once admitted.
/// </summary>
internal sealed class Sequence
{
    private int[] _tokens;

    public Sequence(SequenceRequest request, long id)
    {
        Request = request;
        Id = id;
        _tokens = new int[Math.Max(16, request.PromptTokenIds.Count + Math.Min(request.MaxOutputTokens, 1024))];
        for (int i = 0; i < request.PromptTokenIds.Count; i++)
        {
            _tokens[i] = request.PromptTokenIds[i];
        }

        Length = request.PromptTokenIds.Count;
        PromptLength = Length;
        Selector = new TokenSelector(request.Sampling, request.LogitsProcessor);
        SubmittedAt = Stopwatch.GetTimestamp();
    }

    public SequenceRequest Request { get; }

    /// <summary>Submission order: older sequences have smaller ids.</summary>
    public long Id { get; }

    public SequenceState State { get; set; }

    /// <summary>Prompt plus sampled tokens.</summary>
    public int Length { get; private set; }

    public int PromptLength { get; }

    /// <summary>Tokens whose keys and values are in KV memory (the next step feeds tokens from here).</summary>
    public int Computed { get; set; }

    /// <summary>Prompt tokens reused from the prefix cache at the first admission.</summary>
    public int CachedPromptTokens { get; set; } = -1;

    public List<int> Output { get; } = [];

    public TokenSelector Selector { get; }

    public int Preemptions { get; set; }

    /// <summary>Bumped on every admission, so memory can tell a re-admitted sequence from its earlier life.</summary>
    public int Epoch { get; set; }

    /// <summary>The memory backend's per-sequence state (a block table, or a slot).</summary>
    public object? Memory { get; set; }

    /// <summary>The waiting-list node while waiting.</summary>
    public LinkedListNode<Sequence>? WaitingNode { get; set; }

    public CancellationTokenRegistration CancelRegistration { get; set; }

    public long SubmittedAt { get; }

    public long AdmittedAt { get; set; }

    public long FirstTokenAt { get; set; }

    public long LastTokenAt { get; set; }

    public ReadOnlySpan<int> Tokens => _tokens.AsSpan(0, Length);

    public ReadOnlyMemory<int> TokenMemory(int start, int count) => _tokens.AsMemory(start, count);

    public void Append(int token)
    {
        if (Length == _tokens.Length)
        {
            Array.Resize(ref _tokens, _tokens.Length * 2);
        }

        _tokens[Length++] = token;
    }
}
