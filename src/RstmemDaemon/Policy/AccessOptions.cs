using System.Globalization;
using Rstmem.Daemon.Hosting;
using Rstmem.Interop;

namespace Rstmem.Daemon.Policy;

/// <summary>
/// One grant in the <c>Access</c> section: which heaps, and who. A peer matches when it is one of
/// <see cref="Users"/> or in one of <see cref="Groups"/> (anyone, when both are empty), and, when
/// given, runs in one of <see cref="Units"/> and carries one of <see cref="Labels"/>.
/// </summary>
public sealed class AccessRuleOptions
{
    /// <summary>Named in every refusal this rule causes.</summary>
    public string Name { get; set; } = "";

    /// <summary>Use-case names ("secure-video"), heap names ("restricted,trusted-ui", "system"), "@restricted" (every restricted heap) or "*".</summary>
    public List<string> Heaps { get; set; } = [];

    /// <summary>User names or numeric uids; "@daemon" is the uid rstmemd runs as.</summary>
    public List<string> Users { get; set; } = [];

    /// <summary>Group names or numeric gids: the peer's primary group (SO_PEERCRED) or a supplementary one (SO_PEERGROUPS).</summary>
    public List<string> Groups { get; set; } = [];

    /// <summary>systemd units ("mediaplayer.service"): the innermost unit of the peer's cgroup, read through SO_PEERPIDFD.</summary>
    public List<string> Units { get; set; } = [];

    /// <summary>LSM labels (SO_PEERSEC), exactly, or a prefix ending in "*".</summary>
    public List<string> Labels { get; set; } = [];
}

/// <summary>The <c>Access</c> section: who may allocate from which heap, how much of a restricted pool one uid may hold, who sees everyone's usage.</summary>
public sealed class AccessOptions
{
    /// <summary>The grants. Empty: <see cref="DefaultRules"/>.</summary>
    public List<AccessRuleOptions> Rules { get; set; } = [];

    /// <summary>Groups whose members (besides root) see every user's usage.</summary>
    public List<string> AdminGroups { get; set; } = [];

    /// <summary>Percent of a restricted pool one uid may hold (1-100).</summary>
    public int MaxPoolSharePercent { get; set; } = 50;

    /// <summary>Per heap or use case, a percent replacing <see cref="MaxPoolSharePercent"/> (for plain heaps too).</summary>
    public Dictionary<string, int> PoolShares { get; set; } = new(StringComparer.Ordinal);

    /// <summary>Whether root (uid 0) is exempt from pool shares.</summary>
    public bool ExemptRootFromShares { get; set; }

    /// <summary>The grant when <see cref="Rules"/> is empty: restricted heaps to the daemon's own user and to the group rstmem.</summary>
    public const string DefaultGroup = "rstmem";

    public IReadOnlyList<AccessRuleOptions> EffectiveRules(Func<string, uint?> groups) => Rules.Count > 0 ? Rules :
    [
        new AccessRuleOptions
        {
            Name = "default",
            Heaps = ["@restricted"],
            Users = ["@daemon"],
            Groups = groups(DefaultGroup) is null ? [] : [DefaultGroup],
        },
    ];

    public IReadOnlyList<string> Validate(Func<string, uint?> users, Func<string, uint?> groups)
    {
        var problems = new List<string>();
        for (int i = 0; i < Rules.Count; i++)
        {
            AccessRuleOptions rule = Rules[i];
            string key = $"Access:Rules:{i}";
            if (rule.Name.Length == 0)
            {
                problems.Add($"{key}:Name: '' is not allowed; expected a name for refusals to cite");
            }
            if (rule.Heaps.Count == 0)
            {
                problems.Add($"{key}:Heaps: empty; expected use-case or heap names, \"@restricted\" or \"*\"");
            }
            foreach (string user in rule.Users.Where(u => u != AccessPolicy.DaemonUser && ParseId(u, users) is null))
            {
                problems.Add($"{key}:Users: '{user}' is not a user in /etc/passwd; expected a user name, a numeric uid or \"@daemon\"");
            }
            foreach (string group in rule.Groups.Where(g => ParseId(g, groups) is null))
            {
                problems.Add($"{key}:Groups: '{group}' is not a group in /etc/group; expected a group name or a numeric gid");
            }
            foreach (string unit in rule.Units.Where(u => !(u.EndsWith(".service", StringComparison.Ordinal) || u.EndsWith(".scope", StringComparison.Ordinal)) || u.Contains('/')))
            {
                problems.Add($"{key}:Units: '{unit}' is not a unit name; expected NAME.service or NAME.scope");
            }
            foreach (string label in rule.Labels.Where(l => l.Length == 0 || (l.Contains('*') && l.IndexOf('*') != l.Length - 1)))
            {
                problems.Add($"{key}:Labels: '{label}' is not a label; expected a label, or a prefix ending in '*'");
            }
        }
        foreach (string group in AdminGroups.Where(g => ParseId(g, groups) is null))
        {
            problems.Add($"Access:AdminGroups: '{group}' is not a group in /etc/group; expected a group name or a numeric gid");
        }
        if (MaxPoolSharePercent is < 1 or > 100)
        {
            problems.Add($"Access:MaxPoolSharePercent: '{MaxPoolSharePercent}' is out of range; expected 1 to 100");
        }
        foreach (var (heap, percent) in PoolShares.Where(p => p.Value is < 1 or > 100))
        {
            problems.Add($"Access:PoolShares:{heap}: '{percent}' is out of range; expected 1 to 100");
        }
        return problems;
    }

    /// <summary>A numeric id, or a name looked up in the account database.</summary>
    public static uint? ParseId(string text, Func<string, uint?> lookup) =>
        uint.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out uint id) ? id : text.Length == 0 ? null : lookup(text);
}

/// <summary>/etc/passwd lookups (name → uid), as <see cref="GroupDatabase"/> does for groups.</summary>
public static class PasswdDatabase
{
    public static uint? TryGetUid(string name, string path = "/etc/passwd")
    {
        if (!File.Exists(path))
        {
            return null;
        }
        foreach (string line in File.ReadLines(path))
        {
            string[] fields = line.Split(':');
            if (fields.Length >= 3 && fields[0] == name && uint.TryParse(fields[2], NumberStyles.None, CultureInfo.InvariantCulture, out uint uid))
            {
                return uid;
            }
        }
        return null;
    }
}
