namespace LocalMxfp4.Tokenization;

/// <summary>Special-token names by id, plus alternative names that still resolve to an id.</summary>
internal sealed class SpecialTokenSet
{
    private SpecialTokenSet(SortedDictionary<int, string> byId, Dictionary<string, int> byName, Dictionary<string, int> aliases)
    {
        ById = byId;
        ByName = byName;
        Aliases = aliases;
    }

    public SortedDictionary<int, string> ById { get; }

    /// <summary>Canonical name → id; exactly one entry per special id.</summary>
    public Dictionary<string, int> ByName { get; }

    /// <summary>Names the files used that were replaced by a canonical name (e.g. LLaMA-3.0 reserved names).</summary>
    public Dictionary<string, int> Aliases { get; }

    /// <summary>
    /// Builds the set, renaming the three ids that LLaMA-3.1 took out of the reserved range when the files still
    /// carry the 3.0 placeholder names, so that prompt code can always look up <c>&lt;|eom_id|&gt;</c> and friends.
    /// </summary>
    public static SpecialTokenSet Create(IReadOnlyDictionary<int, string> names)
    {
        var byId = new SortedDictionary<int, string>();
        foreach (var (id, name) in names)
        {
            byId[id] = name;
        }

        var aliases = new Dictionary<string, int>(StringComparer.Ordinal);
        int? first = null;
        foreach (var (id, name) in byId)
        {
            if (name == Llama3Defaults.BeginOfText)
            {
                first = id;
                break;
            }
        }

        if (first is int begin)
        {
            foreach (var (offset, canonical) in Llama3Defaults.Llama31Renames)
            {
                int id = begin + offset;
                if (byId.TryGetValue(id, out string? old) && Llama3Defaults.ReservedName().IsMatch(old)
                    && !byId.ContainsValue(canonical))
                {
                    aliases[old] = id;
                    byId[id] = canonical;
                }
            }
        }

        var byName = new Dictionary<string, int>(byId.Count, StringComparer.Ordinal);
        foreach (var (id, name) in byId)
        {
            // The lowest id wins a duplicated name; later ones stay reachable by id only.
            byName.TryAdd(name, id);
        }

        return new SpecialTokenSet(byId, byName, aliases);
    }
}
