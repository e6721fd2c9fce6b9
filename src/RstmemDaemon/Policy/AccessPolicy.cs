namespace Rstmem.Daemon.Policy;

/// <summary>One grant, resolved: names to ids once, when the configuration is loaded.</summary>
public sealed record AccessRule(string Name, IReadOnlyList<string> Heaps, IReadOnlyList<uint> Uids, IReadOnlyList<uint> Gids,
    IReadOnlyList<string> Units, IReadOnlyList<string> Labels, string Who)
{
    // Covers and Matches run for every ALLOC: loops, no lambdas or iterators to allocate.
    public bool Covers(string heap, string? useCase, bool restricted)
    {
        for (int i = 0; i < Heaps.Count; i++)
        {
            string h = Heaps[i];
            if (h == "*" || h == heap || (useCase is not null && h == useCase) || (restricted && h == AccessPolicy.RestrictedHeaps))
            {
                return true;
            }
        }
        return false;
    }

    private bool Names(PeerIdentity peer)
    {
        if (Uids.Count == 0 && Gids.Count == 0)
        {
            return true; // anyone
        }
        for (int i = 0; i < Uids.Count; i++)
        {
            if (Uids[i] == peer.Uid)
            {
                return true;
            }
        }
        for (int i = 0; i < Gids.Count; i++)
        {
            if (peer.InGroup(Gids[i]))
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>Whether <paramref name="peer"/> is granted; otherwise <paramref name="unmet"/> says what it lacks.</summary>
    public bool Matches(PeerIdentity peer, out string unmet)
    {
        if (!Names(peer))
        {
            unmet = $"needs {Who}";
            return false;
        }
        if (Units.Count > 0)
        {
            string? unit = peer.Unit;
            if (unit is null)
            {
                unmet = $"needs unit {string.Join(" or ", Units)}: {peer.UnitProblem}";
                return false;
            }
            if (!Units.Contains(unit))
            {
                unmet = $"needs unit {string.Join(" or ", Units)}, not {unit}";
                return false;
            }
        }
        if (Labels.Count > 0)
        {
            string? label = peer.Label;
            if (label is null)
            {
                unmet = $"needs label {string.Join(" or ", Labels)}: {peer.LabelProblem}";
                return false;
            }
            if (!Labels.Any(l => l.EndsWith('*') ? label.StartsWith(l[..^1], StringComparison.Ordinal) : l == label))
            {
                unmet = $"needs label {string.Join(" or ", Labels)}, not {label}";
                return false;
            }
        }
        unmet = "";
        return true;
    }
}

/// <summary>
/// Who may allocate from which heap, how much of a restricted pool one uid may hold, and who
/// sees every user's usage. Immutable: the broker reads the current one through
/// <see cref="PolicyReference"/>, and a reload (SIGHUP) swaps in a new one between requests, so
/// connected clients stay connected and each request sees one policy whole.
/// </summary>
public sealed class AccessPolicy
{
    /// <summary>In <c>Heaps</c>: every restricted heap.</summary>
    public const string RestrictedHeaps = "@restricted";

    /// <summary>In <c>Users</c>: the uid rstmemd runs as (so `./build.sh run` serves the user who runs it).</summary>
    public const string DaemonUser = "@daemon";

    private AccessPolicy(IReadOnlyList<AccessRule>? rules, IReadOnlyList<uint> adminGids, int sharePercent,
        IReadOnlyDictionary<string, int> poolShares, bool exemptRoot)
    {
        Rules = rules;
        AdminGids = adminGids;
        SharePercent = sharePercent;
        PoolShares = poolShares;
        ExemptRoot = exemptRoot;
    }

    /// <summary>The grants; null grants everything to everyone who can connect (no Access section given: tests, benchmarks).</summary>
    public IReadOnlyList<AccessRule>? Rules { get; }

    public IReadOnlyList<uint> AdminGids { get; }

    /// <summary>Percent of a restricted pool one uid may hold; 100 is no limit.</summary>
    public int SharePercent { get; }

    public IReadOnlyDictionary<string, int> PoolShares { get; }

    public bool ExemptRoot { get; }

    /// <summary>Every heap to everyone who can connect, no shares; only root sees every user.</summary>
    public static AccessPolicy Unrestricted { get; } = new(null, [], 100, new Dictionary<string, int>(), exemptRoot: false);

    /// <summary>Resolves a validated <see cref="AccessOptions"/>; names were checked by <see cref="AccessOptions.Validate"/>.</summary>
    public static AccessPolicy From(AccessOptions options, uint daemonUid, Func<string, uint?> users, Func<string, uint?> groups)
    {
        ArgumentNullException.ThrowIfNull(options);
        var rules = new List<AccessRule>();
        foreach (AccessRuleOptions rule in options.EffectiveRules(groups))
        {
            uint[] uids = [.. rule.Users.Select(u => u == DaemonUser ? daemonUid : Resolve(u, users, "user"))];
            uint[] gids = [.. rule.Groups.Select(g => Resolve(g, groups, "group"))];
            var who = new List<string>();
            who.AddRange(rule.Users.Select((u, i) => u == DaemonUser ? $"uid {daemonUid} (the daemon's)" : $"user {u}"));
            who.AddRange(rule.Groups.Select(g => $"group {g}"));
            rules.Add(new AccessRule(rule.Name, [.. rule.Heaps], uids, gids, [.. rule.Units], [.. rule.Labels],
                who.Count == 0 ? "anyone" : string.Join(" or ", who)));
        }
        return new AccessPolicy(rules, [.. options.AdminGroups.Select(g => Resolve(g, groups, "group"))], options.MaxPoolSharePercent,
            new Dictionary<string, int>(options.PoolShares, StringComparer.Ordinal), options.ExemptRootFromShares);
    }

    private static uint Resolve(string name, Func<string, uint?> lookup, string kind) =>
        AccessOptions.ParseId(name, lookup) ?? throw new ArgumentException($"{kind} '{name}' is unknown; expected a name in the account database or a number");

    /// <summary>
    /// Whether <paramref name="peer"/> may allocate from the heap. A heap no rule names is open to
    /// every client when it is a plain heap and closed when it is restricted. A refusal names
    /// each rule that covers the heap and what the peer lacks.
    /// </summary>
    public bool MayAllocate(PeerIdentity peer, string heap, string? useCase, bool restricted, out string refusal)
    {
        ArgumentNullException.ThrowIfNull(peer);
        refusal = "";
        if (Rules is null)
        {
            return true;
        }
        // A grant costs a walk of the rules and nothing more; only a refusal builds its text.
        bool covered = false;
        for (int i = 0; i < Rules.Count; i++)
        {
            AccessRule rule = Rules[i];
            if (rule.Covers(heap, useCase, restricted))
            {
                covered = true;
                if (rule.Matches(peer, out _))
                {
                    return true;
                }
            }
        }
        if (!covered && !restricted)
        {
            return true;
        }
        refusal = Refusal(peer, heap, useCase, restricted);
        return false;
    }

    /// <summary>Why <see cref="MayAllocate"/> refused: in a method of its own, so a grant makes no closure.</summary>
    private string Refusal(PeerIdentity peer, string heap, string? useCase, bool restricted)
    {
        string what = useCase is null ? heap : $"{useCase} ({heap})";
        var unmet = new List<string>();
        foreach (AccessRule rule in Rules!.Where(r => r.Covers(heap, useCase, restricted)))
        {
            rule.Matches(peer, out string why);
            unmet.Add($"rule '{rule.Name}' {why}");
        }
        return unmet.Count == 0
            ? $"uid {peer.Uid} may not use {what}: no rule in Access:Rules grants this restricted heap"
            : $"uid {peer.Uid} (gid {peer.Gid}) may not use {what}: {string.Join("; ", unmet)}";
    }

    /// <summary>
    /// The most bytes of this heap one uid may hold: <see cref="SharePercent"/> (or the heap's own
    /// entry in <see cref="PoolShares"/>) of a restricted pool whose size is known; no limit
    /// (long.MaxValue) otherwise, or for root when <see cref="ExemptRoot"/>.
    /// </summary>
    public long ShareLimit(uint uid, string heap, string? useCase, bool restricted, long poolBytes) =>
        ShareLimit(SharePercentOf(uid, heap, useCase, restricted), poolBytes);

    /// <summary>
    /// The percent of the pool <paramref name="uid"/> may hold of this heap:
    /// 100 (no share limit) for an exempt root, else the heap's or use case's
    /// entry in <see cref="PoolShares"/>, else <see cref="SharePercent"/> for
    /// restricted memory and 100 for the rest. The pool's size is needed only below 100.
    /// </summary>
    public int SharePercentOf(uint uid, string heap, string? useCase, bool restricted) =>
        ExemptRoot && uid == 0 ? 100
            : PoolShares.TryGetValue(heap, out int p) ? p
            : useCase is not null && PoolShares.TryGetValue(useCase, out p) ? p
            : restricted ? SharePercent : 100;

    /// <summary><paramref name="percent"/> of a pool of <paramref name="poolBytes"/>; no limit for 100 or a pool whose size is not known.</summary>
    public static long ShareLimit(int percent, long poolBytes) =>
        poolBytes <= 0 || percent >= 100 ? long.MaxValue : (long)(poolBytes * (decimal)percent / 100m);

    /// <summary>Root, or a member of an admin group: sees every user's usage.</summary>
    public bool IsAdmin(PeerIdentity peer) => peer.Uid == 0 || AdminGids.Any(peer.InGroup);
}

/// <summary>The one reference through which the broker reads the current <see cref="AccessPolicy"/>.</summary>
public sealed class PolicyReference(AccessPolicy initial)
{
    private AccessPolicy current = initial;

    public AccessPolicy Current => Volatile.Read(ref current);

    /// <summary>Replaces the policy; requests already being handled finish under the old one.</summary>
    public AccessPolicy Swap(AccessPolicy next)
    {
        ArgumentNullException.ThrowIfNull(next);
        return Interlocked.Exchange(ref current, next);
    }
}
