using Rstmem.Daemon.Broker;
using Rstmem.Daemon.Client;
using Rstmem.Daemon.Hosting;
using Rstmem.Daemon.Policy;
using Rstmem.Daemon.Protocol;
using Rstmem.Interop;
using Rstmem.Tests.Support;
using static Rstmem.Daemon.Protocol.RstmemProtocol;

namespace Rstmem.Tests.Policy;

/// <summary>
/// The access policy, pool shares, private statistics and the refused connection, through the
/// broker's socket. Other users are played by threads with another uid (<see cref="AsUser"/>).
/// </summary>
public sealed class PolicyBrokerTests
{
    private const uint Other = 65534;
    private const uint OtherGroup = 4242;
    private static readonly long MiB = 1L << 20;

    private static AccessPolicy Policy(params AccessRuleOptions[] rules) =>
        AccessPolicy.From(new AccessOptions { Rules = [.. rules] }, 0, _ => null, _ => null);

    /// <summary>A broker whose socket other uids can reach.</summary>
    private static BrokerFixture OpenBroker(BrokerLimits? limits = null)
    {
        var broker = new BrokerFixture(limits: limits);
        File.SetUnixFileMode(Path.GetDirectoryName(broker.SocketPath)!, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.OtherExecute | UnixFileMode.GroupExecute);
        File.SetUnixFileMode(broker.SocketPath, (UnixFileMode)Convert.ToInt32("666", 8));
        return broker;
    }

    private static RstmemClient ConnectAs(BrokerFixture broker, uint uid, params uint[] groups) =>
        AsUser.Run(uid, uid, groups, () => RstmemClient.Connect(broker.SocketPath));

    [Fact]
    public void A_peer_not_granted_gets_EACCES_naming_the_rule_and_a_reload_grants_it_on_the_same_connection()
    {
        using var broker = new BrokerFixture();
        broker.Server.Ledger.Policy.Swap(Policy(new AccessRuleOptions { Name = "players", Heaps = ["secure-video"], Users = ["4321"] }));
        using RstmemClient client = RstmemClient.Connect(broker.SocketPath);

        var refused = Assert.Throws<RstmemException>(() => client.Allocate("secure-video", MiB));
        Assert.Equal(Errno.EACCES, refused.Errno);
        Assert.Equal("uid 0 (gid 0) may not use secure-video (protected,secure-video): rule 'players' needs user 4321", refused.Message);
        var closed = Assert.Throws<RstmemException>(() => client.Allocate("trusted-ui", MiB));
        Assert.Contains("no rule in Access:Rules grants this restricted heap", closed.Message, StringComparison.Ordinal);
        using (client.Allocate("system", MiB))
        {
            // a plain heap no rule names stays open
        }
        Assert.Equal(0ul, client.ListHeaps().Single(h => h.UseCase == "secure-video").MaxAllocBytes);

        broker.Server.Ledger.Policy.Swap(Policy(new AccessRuleOptions { Name = "root", Heaps = ["@restricted"], Groups = ["0"] }));
        using AllocatedBuffer granted = client.Allocate("secure-video", MiB);
        Assert.Equal(MiB, granted.Size);
    }

    [Fact]
    public void Supplementary_groups_from_SO_PEERGROUPS_grant_a_group_rule()
    {
        using BrokerFixture broker = OpenBroker();
        broker.Server.Ledger.Policy.Swap(Policy(new AccessRuleOptions { Name = "media", Heaps = ["secure-video"], Groups = [OtherGroup.ToString(System.Globalization.CultureInfo.InvariantCulture)] }));
        using RstmemClient member = ConnectAs(broker, Other, OtherGroup);
        using RstmemClient outsider = ConnectAs(broker, Other);

        using AllocatedBuffer buffer = member.Allocate("secure-video", MiB);
        var refused = Assert.Throws<RstmemException>(() => outsider.Allocate("secure-video", MiB));
        Assert.Equal(Errno.EACCES, refused.Errno);
        Assert.Contains($"uid {Other} (gid {Other}) may not use secure-video (protected,secure-video): rule 'media' needs group {OtherGroup}", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_unit_rule_reads_the_peers_cgroup_through_its_pidfd()
    {
        using var broker = new BrokerFixture();
        broker.Server.Ledger.Policy.Swap(Policy(new AccessRuleOptions { Name = "player", Heaps = ["secure-video"], Units = ["player.service"] }));
        using RstmemClient client = RstmemClient.Connect(broker.SocketPath);
        var refused = Assert.Throws<RstmemException>(() => client.Allocate("secure-video", MiB));
        Assert.Equal(Errno.EACCES, refused.Errno);

        // What the daemon saw, read the same way here: this test process's own unit, or why there is none.
        (string? unit, string problem) = ExpectedUnit();
        Assert.Contains(unit is null ? $"rule 'player' needs unit player.service: {problem}" : $"rule 'player' needs unit player.service, not {unit}",
            refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_unit_rule_grants_a_process_in_that_units_cgroup_and_refuses_the_same_program_outside_it()
    {
        (string? _, string problem) = ExpectedUnit();
        if (problem.Contains("no SO_PEERPIDFD", StringComparison.Ordinal))
        {
            Assert.Skip($"the unit rule needs SO_PEERPIDFD: {problem}");
        }
        string? hierarchy = UnifiedHierarchy();
        if (hierarchy is null || Interop.Sys.GetEffectiveUserId() != 0)
        {
            Assert.Skip("making a cgroup for a unit needs root and a cgroup v2 hierarchy (none in /proc/self/mountinfo)");
        }
        // A cgroup the peer's /proc/PID/cgroup names as .../rstmem-test-N.slice/player.service,
        // which is what systemd makes for a service; the child joins it before it connects.
        string slice = Path.Combine(hierarchy, $"rstmem-test-{Environment.ProcessId}-{Guid.NewGuid():N}.slice");
        string unit = Path.Combine(slice, "player.service");
        try
        {
            Directory.CreateDirectory(unit);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Assert.Skip($"cannot make a cgroup under {hierarchy}: {e.Message}");
        }
        try
        {
            using var broker = new BrokerFixture();
            broker.Server.Ledger.Policy.Swap(Policy(new AccessRuleOptions { Name = "player", Heaps = ["secure-video"], Units = ["player.service"] }));
            string player = Path.Combine(RepoPaths.NativeBuildDir, "rstmem-alloc");
            ProcessResult Play(string? cgroup) => ProcessRunner.Run("/bin/sh",
            [
                "-c", """[ -z "$1" ] || echo $$ >"$1/cgroup.procs" || exit 99; RSTMEM_DEBUG=1 exec "$2" --socket "$3" --use-case secure-video 1048576""",
                "sh", cgroup ?? "", player, broker.SocketPath,
            ]);

            ProcessResult inside = Play(unit);
            Assert.True(inside.ExitCode == 0, inside.ToString());
            Assert.Contains("1048576", inside.Stdout, StringComparison.Ordinal);

            ProcessResult outside = Play(null);
            Assert.True(outside.ExitCode != 0, outside.ToString());
            Assert.Contains("rule 'player' needs unit player.service", outside.Stderr, StringComparison.Ordinal);
            Assert.Contains("Permission denied", outside.Stderr, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(unit); // empty: the child has exited and been reaped
            Directory.Delete(slice);
        }
    }

    /// <summary>Where the cgroup v2 hierarchy is mounted (a cgroup2 line in /proc/self/mountinfo), or null.</summary>
    private static string? UnifiedHierarchy()
    {
        foreach (string line in File.ReadLines("/proc/self/mountinfo"))
        {
            // "36 25 0:31 / /sys/fs/cgroup rw,... shared:9 - cgroup2 cgroup2 rw": the mount point is field 5.
            string[] halves = line.Split(" - ", 2);
            if (halves.Length == 2 && halves[1].StartsWith("cgroup2 ", StringComparison.Ordinal))
            {
                return halves[0].Split(' ')[4];
            }
        }
        return null;
    }

    private static (string? Unit, string Problem) ExpectedUnit()
    {
        Assert.Equal(Errno.None, Interop.Sys.TrySocketPair(Interop.Uapi.Sockets.AF_UNIX, Interop.Uapi.Sockets.SOCK_SEQPACKET, 0, out SafeFd a, out SafeFd b));
        using (a)
        using (b)
        {
            return PeerUnit.Read(a);
        }
    }

    [Fact]
    public void With_the_default_share_one_uid_filling_secure_video_stops_at_half_with_EDQUOT_and_another_uid_still_allocates()
    {
        using BrokerFixture broker = OpenBroker();
        // The shipped defaults (MaxPoolSharePercent 50, root not exempt), with every heap granted to everyone.
        var options = new DaemonOptions();
        options.Access.Rules = [new AccessRuleOptions { Name = "everyone", Heaps = ["*"] }];
        Assert.Empty(options.Validate());
        broker.Server.Ledger.Policy.Swap(options.AccessPolicy(0));

        using RstmemClient root = RstmemClient.Connect(broker.SocketPath);
        var held = new List<AllocatedBuffer>();
        try
        {
            RstmemException? refusal = null;
            while (refusal is null)
            {
                try
                {
                    held.Add(root.Allocate("secure-video", MiB));
                }
                catch (RstmemException e)
                {
                    refusal = e;
                }
            }
            Assert.Equal(Errno.EDQUOT, refusal.Errno);
            Assert.StartsWith("pool share (Access:MaxPoolSharePercent or Access:PoolShares): uid 0 holds", refusal.Message, StringComparison.Ordinal);
            Assert.Equal(BrokerFixture.SecureVideoBytes / 2, held.Sum(b => b.Size));

            using RstmemClient other = ConnectAs(broker, Other);
            using AllocatedBuffer theirs = other.Allocate("secure-video", MiB);
            Assert.Equal(MiB, theirs.Size);
        }
        finally
        {
            held.ForEach(b => b.Dispose());
        }
    }

    [Fact]
    public void Statistics_are_private_a_caller_sees_its_own_usage_and_limits_and_root_sees_everyone()
    {
        using BrokerFixture broker = OpenBroker();
        using RstmemClient root = RstmemClient.Connect(broker.SocketPath);
        using RstmemClient other = ConnectAs(broker, Other);
        using AllocatedBuffer a = root.Allocate("secure-video", MiB);
        using AllocatedBuffer b = root.Allocate("system", MiB);
        using AllocatedBuffer c = other.Allocate("system", 2 * MiB);

        DaemonStats mine = other.Stats();
        Assert.Equal((1ul, 1ul, (ulong)(2 * MiB), 1u), (mine.Allocations, mine.LiveBuffers, mine.LiveBytes, mine.Clients));
        Assert.Equal(0ul, mine.Heaps.Single(h => h.Name == "protected,secure-video").LiveBuffers);
        HeapStats system = mine.Heaps.Single(h => h.Name == "system");
        Assert.Equal((1ul, (ulong)(2 * MiB), (ulong)BrokerFixture.SystemHeapBytes), (system.LiveBuffers, system.LiveBytes, system.TotalBytes));

        DaemonStats all = root.Stats();
        Assert.Equal((3ul, 3ul, (ulong)(4 * MiB), 2u), (all.Allocations, all.LiveBuffers, all.LiveBytes, all.Clients));

        UserUsageInfo usage = other.Usage();
        Assert.Equal((Other, false, (uint?)null, 1u, 1ul, (ulong)(2 * MiB)), (usage.Uid, usage.Admin, usage.NextUid, usage.Connections, usage.Buffers, usage.Bytes));
        Assert.Equal(((uint)BrokerFixture.DefaultLimits.MaxBuffersPerUser, (ulong)BrokerFixture.DefaultLimits.MaxBytesPerUser), (usage.MaxBuffers, usage.MaxBytes));
        Assert.True(usage.Heaps.All(h => h.Granted && h.ShareBytes is null));
        var denied = Assert.Throws<RstmemException>(() => other.Usage(0));
        Assert.Equal(Errno.EACCES, denied.Errno);

        UserUsageInfo seen = root.Usage(0);
        Assert.True(seen.Admin);
        Assert.Equal(Other, seen.NextUid);
        Assert.Equal((ulong)(2 * MiB), root.Usage(Other).Bytes);
    }

    [Fact]
    public void A_connection_over_the_per_user_limit_is_told_why_before_it_is_closed()
    {
        using var broker = new BrokerFixture(limits: BrokerFixture.DefaultLimits with { MaxConnectionsPerUser = 1 });
        using RstmemClient first = RstmemClient.Connect(broker.SocketPath);
        var refused = Assert.Throws<RstmemException>(() => RstmemClient.Connect(broker.SocketPath));
        Assert.True(refused.Errno == Errno.EUSERS, $"{refused.Errno}: {refused.Message}");
        Assert.Equal("MaxConnectionsPerUser: uid 0 has 1 connections open; the limit is 1", refused.Message);
    }

    [Fact]
    public void A_version_1_client_is_served_as_before_and_USAGE_needs_version_2()
    {
        using var broker = new BrokerFixture();
        using var raw = new RawClient(broker.SocketPath);
        raw.Send(RawClient.Packet(RSTMEM_OP_HELLO, 1, Wire.Bytes(new rstmem_hello_request { min_version = 1, max_version = 1 }), version: 1));
        var hello = raw.Receive();
        Assert.Equal((Errno.None, (ushort)1), (hello.Error, hello.Header.version));
        Assert.Equal(1, System.Runtime.InteropServices.MemoryMarshal.Read<rstmem_hello_reply>(hello.Body).version);

        raw.Send(RawClient.Packet(RSTMEM_OP_LIST_HEAPS, 2, [], version: 1));
        var heaps = raw.Receive();
        Assert.Equal((Errno.None, (ushort)1), (heaps.Error, heaps.Header.version));
        Assert.Equal((uint)BrokerFixture.HeapCount, System.Runtime.InteropServices.MemoryMarshal.Read<rstmem_heap_list>(heaps.Body).count);

        var request = new rstmem_alloc_request { size = (ulong)MiB };
        unsafe
        {
            Wire.WriteString(Wire.Field(request.target, RSTMEM_HEAP_NAME_LEN), "secure-video", "target");
        }
        raw.Send(RawClient.Packet(RSTMEM_OP_ALLOC, 3, Wire.Bytes(request), version: 1));
        var alloc = raw.Receive();
        Assert.Equal(Errno.None, alloc.Error);
        Assert.Single(alloc.Fds).Dispose();

        raw.Send(RawClient.Packet(RSTMEM_OP_STATS, 4, [], version: 1));
        var stats = raw.Receive();
        Assert.Equal(Errno.None, stats.Error);
        var totals = System.Runtime.InteropServices.MemoryMarshal.Read<rstmem_stats_reply>(stats.Body);
        Assert.Equal((1ul, (uint)BrokerFixture.HeapCount), (totals.allocations, totals.count));
        // Version 1's layout: the entries right after the 56-byte totals, without version 2's release fields.
        Assert.Equal(56 + (int)(totals.count * totals.entry_size), stats.Body.Length);
        var first = System.Runtime.InteropServices.MemoryMarshal.Read<rstmem_heap_stats>(stats.Body.AsSpan(56));
        string firstName;
        unsafe
        {
            firstName = Wire.ReadString(Wire.Field(first.name, RSTMEM_HEAP_NAME_LEN), "heap name");
        }
        Assert.Contains(firstName, new[] { "system", BrokerFixture.CmaHeapName, "protected,secure-video", "protected,trusted-ui", "protected,secure-video-record" });

        raw.Send(RawClient.Packet(RSTMEM_OP_USAGE, 5, Wire.Bytes(new rstmem_usage_request()), version: 1));
        var usage = raw.Receive();
        Assert.Equal((Errno.ENOSYS, "USAGE needs protocol version 2; this connection negotiated 1"), (usage.Error, usage.Message));

        raw.Send(RawClient.Packet(RSTMEM_OP_HELLO, 6, Wire.Bytes(new rstmem_hello_request { min_version = 1, max_version = 2, flags = 1 }), version: 2));
        var flags = raw.Receive();
        Assert.Equal((Errno.EINVAL, "HELLO flags 0x1: expected 0"), (flags.Error, flags.Message));
    }
}
