using Rstmem.Daemon.Hosting;
using Rstmem.Daemon.Policy;

namespace Rstmem.Tests.Policy;

/// <summary>The access policy's rules, shares and configuration checks, on peers the tests describe.</summary>
public sealed class AccessPolicyTests
{
    private const uint MediaGid = 4242;

    private static uint? NoUsers(string name) => null;

    private static uint? Groups(string name) => name switch { "media" => MediaGid, "rstmem" => 777, "wheel" => 10, _ => null };

    private static AccessPolicy Policy(params AccessRuleOptions[] rules) =>
        AccessPolicy.From(new AccessOptions { Rules = [.. rules] }, daemonUid: 999, NoUsers, Groups);

    private static readonly AccessPolicy Rules = Policy(
        new AccessRuleOptions { Name = "players", Heaps = ["secure-video"], Groups = ["media"] },
        new AccessRuleOptions { Name = "compositor", Heaps = ["trusted-ui"], Units = ["compositor.service"] },
        new AccessRuleOptions { Name = "labelled", Heaps = ["restricted,secure-video-record"], Users = ["1000"], Labels = ["player_t*"] });

    [Fact]
    public void A_group_rule_grants_members_by_primary_or_supplementary_group_and_names_itself_in_a_refusal()
    {
        Assert.True(Rules.MayAllocate(PeerIdentity.Of(1000, 1000, groups: [MediaGid]), "restricted,secure-video", "secure-video", true, out _));
        Assert.True(Rules.MayAllocate(PeerIdentity.Of(1000, MediaGid), "restricted,secure-video", "secure-video", true, out _));
        Assert.False(Rules.MayAllocate(PeerIdentity.Of(1000, 1000, groups: [5]), "restricted,secure-video", "secure-video", true, out string refusal));
        Assert.Equal("uid 1000 (gid 1000) may not use secure-video (restricted,secure-video): rule 'players' needs group media", refusal);
    }

    [Fact]
    public void A_unit_rule_grants_only_that_unit_and_says_why_a_unit_is_unknown()
    {
        Assert.True(Rules.MayAllocate(PeerIdentity.Of(1000, 1000, unit: "compositor.service"), "restricted,trusted-ui", "trusted-ui", true, out _));
        Assert.False(Rules.MayAllocate(PeerIdentity.Of(1000, 1000, unit: "player.service"), "restricted,trusted-ui", "trusted-ui", true, out string other));
        Assert.Contains("rule 'compositor' needs unit compositor.service, not player.service", other, StringComparison.Ordinal);
        var unknown = new PeerIdentity(1000, 1000, 5, [], null, "none", () => (null, "this kernel has no SO_PEERPIDFD (Linux 6.5+)"));
        Assert.False(Rules.MayAllocate(unknown, "restricted,trusted-ui", "trusted-ui", true, out string why));
        Assert.Contains("needs unit compositor.service: this kernel has no SO_PEERPIDFD (Linux 6.5+)", why, StringComparison.Ordinal);
    }

    [Fact]
    public void A_label_rule_matches_exactly_or_by_prefix_and_needs_its_user_too()
    {
        const string Heap = "restricted,secure-video-record";
        Assert.True(Rules.MayAllocate(PeerIdentity.Of(1000, 1000, label: "player_t:s0"), Heap, "secure-video-record", true, out _));
        Assert.False(Rules.MayAllocate(PeerIdentity.Of(1000, 1000, label: "browser_t"), Heap, "secure-video-record", true, out string wrong));
        Assert.Contains("rule 'labelled' needs label player_t*, not browser_t", wrong, StringComparison.Ordinal);
        Assert.False(Rules.MayAllocate(PeerIdentity.Of(1001, 1000, label: "player_t"), Heap, "secure-video-record", true, out string user));
        Assert.Contains("rule 'labelled' needs user 1000", user, StringComparison.Ordinal);
        Assert.False(Rules.MayAllocate(PeerIdentity.Of(1000, 1000), Heap, "secure-video-record", true, out string none));
        Assert.Contains("needs label player_t*: no LSM label was given", none, StringComparison.Ordinal);
    }

    [Fact]
    public void A_restricted_heap_no_rule_names_is_closed_and_a_plain_one_is_open()
    {
        AccessPolicy policy = Policy(new AccessRuleOptions { Name = "players", Heaps = ["secure-video"], Groups = ["media"] });
        Assert.False(policy.MayAllocate(PeerIdentity.Of(0, 0), "restricted,trusted-ui", "trusted-ui", true, out string refusal));
        Assert.Contains("no rule in Access:Rules grants this restricted heap", refusal, StringComparison.Ordinal);
        Assert.True(policy.MayAllocate(PeerIdentity.Of(1000, 1000), "system", null, false, out _));
        Assert.True(AccessPolicy.Unrestricted.MayAllocate(PeerIdentity.Of(1000, 1000), "restricted,trusted-ui", "trusted-ui", true, out _));
    }

    [Fact]
    public void The_default_grants_restricted_heaps_to_the_daemons_user_and_the_rstmem_group()
    {
        AccessPolicy policy = AccessPolicy.From(new AccessOptions(), daemonUid: 999, NoUsers, Groups);
        Assert.True(policy.MayAllocate(PeerIdentity.Of(999, 999), "restricted,secure-video", "secure-video", true, out _));
        Assert.True(policy.MayAllocate(PeerIdentity.Of(1000, 1000, groups: [777]), "restricted,secure-video", "secure-video", true, out _));
        Assert.False(policy.MayAllocate(PeerIdentity.Of(0, 0), "restricted,secure-video", "secure-video", true, out string refusal));
        Assert.Contains("rule 'default' needs uid 999 (the daemon's) or group rstmem", refusal, StringComparison.Ordinal);
    }

    [Fact]
    public void A_uid_may_hold_half_of_a_restricted_pool_by_default_root_included()
    {
        AccessPolicy policy = AccessPolicy.From(new AccessOptions(), 0, NoUsers, Groups);
        Assert.Equal(32L << 20, policy.ShareLimit(0, "restricted,secure-video", "secure-video", true, 64L << 20));
        Assert.Equal(32L << 20, policy.ShareLimit(1000, "restricted,secure-video", "secure-video", true, 64L << 20));
        Assert.Equal(long.MaxValue, policy.ShareLimit(1000, "system", null, false, 256L << 20));
        Assert.Equal(long.MaxValue, policy.ShareLimit(1000, "restricted,secure-video-record", "secure-video-record", true, 0));

        AccessPolicy tuned = AccessPolicy.From(new AccessOptions
        {
            ExemptRootFromShares = true,
            PoolShares = new(StringComparer.Ordinal) { ["trusted-ui"] = 25, ["system"] = 10 },
        }, 0, NoUsers, Groups);
        Assert.Equal(long.MaxValue, tuned.ShareLimit(0, "restricted,secure-video", "secure-video", true, 64L << 20));
        Assert.Equal(4L << 20, tuned.ShareLimit(1000, "restricted,trusted-ui", "trusted-ui", true, 16L << 20));
        Assert.Equal(25L << 20, tuned.ShareLimit(1000, "system", null, false, 250L << 20));
    }

    [Fact]
    public void Root_and_admin_group_members_are_administrators()
    {
        AccessPolicy policy = AccessPolicy.From(new AccessOptions { AdminGroups = ["wheel"] }, 0, NoUsers, Groups);
        Assert.True(policy.IsAdmin(PeerIdentity.Of(0, 0)));
        Assert.True(policy.IsAdmin(PeerIdentity.Of(1000, 1000, groups: [10])));
        Assert.False(policy.IsAdmin(PeerIdentity.Of(1000, 1000)));
    }

    [Fact]
    public void Every_bad_access_setting_is_named_with_its_value_and_what_was_expected()
    {
        var options = new AccessOptions
        {
            Rules =
            [
                new AccessRuleOptions { Name = "", Heaps = [], Users = ["nosuchuser"], Groups = ["nosuchgroup"], Units = ["sshd"], Labels = ["a*b"] },
            ],
            AdminGroups = ["nosuchgroup"],
            MaxPoolSharePercent = 0,
            PoolShares = new(StringComparer.Ordinal) { ["secure-video"] = 101 },
        };
        Assert.Equal(
        [
            "Access:Rules:0:Name: '' is not allowed; expected a name for refusals to cite",
            "Access:Rules:0:Heaps: empty; expected use-case or heap names, \"@restricted\" or \"*\"",
            "Access:Rules:0:Users: 'nosuchuser' is not a user in /etc/passwd; expected a user name, a numeric uid or \"@daemon\"",
            "Access:Rules:0:Groups: 'nosuchgroup' is not a group in /etc/group; expected a group name or a numeric gid",
            "Access:Rules:0:Units: 'sshd' is not a unit name; expected NAME.service or NAME.scope",
            "Access:Rules:0:Labels: 'a*b' is not a label; expected a label, or a prefix ending in '*'",
            "Access:AdminGroups: 'nosuchgroup' is not a group in /etc/group; expected a group name or a numeric gid",
            "Access:MaxPoolSharePercent: '0' is out of range; expected 1 to 100",
            "Access:PoolShares:secure-video: '101' is out of range; expected 1 to 100",
        ], options.Validate(NoUsers, Groups));
        Assert.Empty(new DaemonOptions().Access.Validate(NoUsers, Groups));
    }

    [Theory]
    [InlineData("0::/system.slice/player.service\n", "player.service")]
    [InlineData("0::/user.slice/user-1000.slice/user@1000.service/app.slice/app-mpv.scope\n", "app-mpv.scope")]
    [InlineData("12:pids:/\n0::/user.slice/user-1000.slice/session-2.scope\n", "session-2.scope")]
    [InlineData("0::/\n", null)]
    public void The_unit_is_the_innermost_service_or_scope_of_the_cgroup_v2_path(string cgroupFile, string? unit) =>
        Assert.Equal(unit, PeerUnit.InnermostUnit(PeerUnit.UnifiedPath(cgroupFile)!));

    [Fact]
    public void A_pidfd_fdinfo_gives_the_pid_or_minus_one_once_the_process_exited()
    {
        Assert.Equal(4321, PeerUnit.FdinfoPid("pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\nPid:\t4321\nNSpid:\t4321\n"));
        Assert.Equal(-1, PeerUnit.FdinfoPid("pos:\t0\nPid:\t-1\n"));
        Assert.Equal(0, PeerUnit.FdinfoPid("pos:\t0\n"));
    }
}
