using System.ComponentModel;
using System.Globalization;
using Microsoft.SemanticKernel;

namespace LocalMxfp4.Samples.SemanticKernelAgent;

/// <summary>The agent's plugin: a notebook the model can write to and read, and a clock.</summary>
public sealed class NotebookPlugin
{
    private readonly List<string> _notes = [];

    /// <summary>Adds a note.</summary>
    [KernelFunction("add_note"), Description("Saves a short note for later.")]
    public string AddNote([Description("The text to remember")] string text)
    {
        _notes.Add(text);
        return $"Saved note #{_notes.Count}.";
    }

    /// <summary>Lists the notes.</summary>
    [KernelFunction("list_notes"), Description("Lists every saved note.")]
    public string ListNotes() => _notes.Count == 0 ? "No notes yet." : string.Join("\n", _notes.Select((n, i) => $"{i + 1}. {n}"));

    /// <summary>The time.</summary>
    [KernelFunction("utc_now"), Description("Gets the current date and time in UTC.")]
    public static string UtcNow() => DateTimeOffset.UtcNow.ToString("u", CultureInfo.InvariantCulture);
}
