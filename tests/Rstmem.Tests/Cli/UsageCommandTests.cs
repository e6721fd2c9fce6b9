using System.Text.Json;
using Rstmem.Daemon.Client;
using Rstmem.Daemon.Cli;
using Rstmem.Daemon.Policy;
using Rstmem.Tests.Support;

namespace Rstmem.Tests.Cli;

/// <summary><c>rstmemd usage</c>: USAGE from the command line, against a model broker.</summary>
public sealed class UsageCommandTests
{
    private const uint Other = 65534;
    private static readonly long MiB = 1L << 20;

    /// <summary>A broker whose socket other uids can reach.</summary>
    private static BrokerFixture OpenBroker()
    {
        var broker = new BrokerFixture();
        File.SetUnixFileMode(Path.GetDirectoryName(broker.SocketPath)!, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.OtherExecute | UnixFileMode.GroupExecute);
        File.SetUnixFileMode(broker.SocketPath, (UnixFileMode)Convert.ToInt32("666", 8));
        return broker;
    }

    private static (int Exit, string Stdout, string Stderr) As(uint uid, params string[] args) =>
        AsUser.Run(uid, uid, [], () => CliRun.Run(args));

    [Fact]
    public void Usage_shows_the_callers_buffers_limits_shares_and_grants()
    {
        using BrokerFixture broker = OpenBroker();
        broker.Server.Ledger.Policy.Swap(AccessPolicy.From(new AccessOptions
        {
            Rules = [new AccessRuleOptions { Name = "root", Heaps = ["secure-video"], Users = ["0"] }],
            MaxPoolSharePercent = 50,
        }, 0, _ => null, _ => null));
        using RstmemClient other = AsUser.Run(Other, Other, [], () => RstmemClient.Connect(broker.SocketPath));
        using AllocatedBuffer held = other.Allocate("system", 3 * MiB);

        var (exit, stdout, stderr) = As(Other, "usage", "--socket", broker.SocketPath);

        Assert.Equal("", stderr);
        Assert.Equal(0, exit);
        string[] lines = stdout.TrimEnd('\n').Split('\n');
        // Two connections of this uid: the held one and the command's own.
        Assert.Equal($"uid {Other}: 2 of 64 connection(s), 1 of 4096 buffer(s), 3MiB of 1TiB", lines[0]);
        Assert.Matches(@"^HEAP\s+BUFFERS\s+BYTES\s+SHARE\s+ALLOCS\s+FAILED\s+GRANTED$", lines[1]);
        Assert.Matches(@"^system\s+1\s+3MiB\s+-\s+1\s+0\s+yes$", lines.Single(l => l.StartsWith("system ", StringComparison.Ordinal)));
        // Half of the 16 MiB pool, and the rule grants it to root only.
        Assert.Matches(@"^protected,secure-video\s+0\s+0\s+8MiB\s+0\s+0\s+no$", lines.Single(l => l.StartsWith("protected,secure-video ", StringComparison.Ordinal)));
        Assert.Equal(1 + 1 + BrokerFixture.HeapCount, lines.Length);
    }

    [Fact]
    public void Usage_json_is_the_clients_record()
    {
        using BrokerFixture broker = OpenBroker();
        using RstmemClient client = RstmemClient.Connect(broker.SocketPath);
        using AllocatedBuffer held = client.Allocate("secure-video", 2 * MiB);

        var (exit, stdout, stderr) = CliRun.Run("usage", "--socket", broker.SocketPath, "--json");

        Assert.Equal((0, ""), (exit, stderr));
        using JsonDocument json = JsonDocument.Parse(stdout);
        Assert.Equal(0u, json.RootElement.GetProperty("Uid").GetUInt32());
        Assert.True(json.RootElement.GetProperty("Admin").GetBoolean());
        Assert.Equal(1ul, json.RootElement.GetProperty("Buffers").GetUInt64());
        JsonElement heap = json.RootElement.GetProperty("Heaps").EnumerateArray().Single(h => h.GetProperty("Name").GetString() == "protected,secure-video");
        Assert.Equal((ulong)(2 * MiB), heap.GetProperty("Bytes").GetUInt64());
    }

    [Fact]
    public void Root_sees_another_user_by_uid_and_everyone_with_all_and_others_are_refused_by_the_daemon()
    {
        using BrokerFixture broker = OpenBroker();
        using RstmemClient root = RstmemClient.Connect(broker.SocketPath);
        using RstmemClient other = AsUser.Run(Other, Other, [], () => RstmemClient.Connect(broker.SocketPath));
        using AllocatedBuffer theirs = other.Allocate("system", 5 * MiB);

        var (exit, stdout, stderr) = CliRun.Run("usage", "--socket", broker.SocketPath, "--uid", Other.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal((0, ""), (exit, stderr));
        Assert.StartsWith($"uid {Other}: 1 of 64 connection(s), 1 of 4096 buffer(s), 5MiB of 1TiB\n", stdout, StringComparison.Ordinal);
        Assert.Matches(@"(?m)^system\s+1\s+5MiB\s+-\s+1\s+0\s+-$", stdout); // GRANTED is the caller's to know

        (exit, stdout, stderr) = CliRun.Run("usage", "--socket", broker.SocketPath, "--all");
        Assert.Equal((0, ""), (exit, stderr));
        Assert.Equal(["uid 0", $"uid {Other}"], stdout.Split('\n').Where(l => l.StartsWith("uid ", StringComparison.Ordinal)).Select(l => l[..l.IndexOf(':', StringComparison.Ordinal)]));

        (exit, stdout, stderr) = As(Other, "usage", "--socket", broker.SocketPath, "--uid", "0");
        Assert.Equal((RstmemdCli.ExitFailure, ""), (exit, stdout));
        Assert.Equal($"rstmemd usage: uid {Other} may not see the usage of uid 0: only root and Access:AdminGroups members may\n", stderr);

        (exit, stdout, stderr) = As(Other, "usage", "--socket", broker.SocketPath, "--all");
        Assert.Equal((RstmemdCli.ExitFailure, ""), (exit, stdout));
        Assert.Equal($"rstmemd usage: --all needs root or a member of Access:AdminGroups; uid {Other} is neither\n", stderr);
    }

    [Theory]
    [InlineData("--uid", "nosuchuser-rstmem", "usage: --uid: 'nosuchuser-rstmem' is neither a uid (0-4294967294) nor a known user name")]
    [InlineData("--uid", "4294967295", "usage: --uid: '4294967295' is neither a uid (0-4294967294) nor a known user name")]
    [InlineData("--uid", "-1", "usage: --uid: '-1' is neither a uid (0-4294967294) nor a known user name")]
    public void A_bad_uid_is_a_usage_error_naming_it(string option, string value, string message)
    {
        var (exit, stdout, stderr) = CliRun.Run("usage", option, value, "--socket", "/nonexistent/rstmemd.sock");

        Assert.Equal((RstmemdCli.ExitUsage, ""), (exit, stdout));
        Assert.Equal($"rstmemd: {message}", stderr.Split('\n')[0]);
    }

    [Fact]
    public void Uid_and_all_together_are_a_usage_error()
    {
        var (exit, _, stderr) = CliRun.Run("usage", "--uid", "0", "--all", "--socket", "/nonexistent/rstmemd.sock");

        Assert.Equal(RstmemdCli.ExitUsage, exit);
        Assert.Equal("rstmemd: usage: give --uid or --all, not both", stderr.Split('\n')[0]);
    }
}
