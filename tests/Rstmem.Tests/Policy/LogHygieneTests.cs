using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using Rstmem.Daemon.Client;
using Rstmem.Daemon.Hosting;
using Rstmem.Daemon.Protocol;
using Rstmem.Interop;
using Rstmem.Tests.Support;
using Serilog.Core;
using Serilog.Events;
using static Rstmem.Daemon.Protocol.RstmemProtocol;

namespace Rstmem.Tests.Policy;

/// <summary>
/// What clients can make the daemon write: every string they choose is escaped (no forged line,
/// on the console or under JOURNAL_STREAM), and a flood of requests writes a bounded number of lines.
/// </summary>
public sealed partial class LogHygieneTests : IDisposable
{
    private const string Configuration = """
        {
          "Backend": "model",
          "Model": {
            "Generation": "mainline", "SystemHeapSize": "64MiB", "CmaHeapName": "reserved", "CmaHeapSize": "0", "TeeShmPool": true,
            "UseCases": { "secure-video": { "Enabled": true, "Kind": "static", "Size": "8MiB" },
                          "trusted-ui": { "Enabled": false }, "secure-video-record": { "Enabled": false } }
          },
          "Limits": { "MaxBuffersPerUser": 4096, "MaxBytesPerUser": "1GiB", "MaxConnectionsPerUser": 64 },
          "LogLevel": "Information"
        }
        """;

    /// <summary>Buffer names a hostile client chooses (at most 31 bytes each), as raw bytes.</summary>
    private static readonly byte[][] HostileNames =
    [
        Encoding.UTF8.GetBytes("x\n<0>rstmemd: FORGED emerg"),
        Encoding.UTF8.GetBytes("\r<1>FORGED alert"),
        Encoding.UTF8.GetBytes("\u001b[2J\u001b[31mFORGED red"),
        [(byte)'b', (byte)'a', (byte)'d', 0xff, 0xfe, (byte)'\n', (byte)'<', (byte)'2', (byte)'>', (byte)'F', (byte)'O', (byte)'R', (byte)'G', (byte)'E', (byte)'D'],
        Encoding.UTF8.GetBytes("rtl\u202eFORGED\u2028<3>sep"),
    ];

    private readonly string directory = Directory.CreateTempSubdirectory("rstmemd-logs-").FullName;

    public LogHygieneTests() => File.WriteAllText(ConfigPath, Configuration);

    private string ConfigPath => Path.Combine(directory, "rstmemd.json");

    private string SocketPath => Path.Combine(directory, "rstmemd.sock");

    public void Dispose() => Directory.Delete(directory, recursive: true);

    [GeneratedRegex(@"^<[0-7]>")]
    private static partial Regex JournalLine();

    [GeneratedRegex(@"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (VRB|DBG|INF|WRN|ERR|FTL) ")]
    private static partial Regex ConsoleLine();

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Hostile_buffer_names_forge_no_log_line(bool journal)
    {
        string[] lines = RunDaemon(journal, () =>
        {
            using var raw = new RawClient(SocketPath);
            Hello(raw);
            uint id = 2;
            foreach (byte[] name in HostileNames)
            {
                raw.Send(Alloc(id++, "system", 4096, name));
                var reply = raw.Receive();
                Assert.Equal(Errno.None, reply.Error);
                Array.ForEach(reply.Fds, fd => fd.Dispose());
            }
        });

        Regex wellFormed = journal ? JournalLine() : ConsoleLine();
        Assert.All(lines, line => Assert.Matches(wellFormed, line));
        Assert.DoesNotContain(lines, line => line.Contains('\u001b') || line.Contains('\r') || line.Contains('\u202e') || line.Contains('\u2028'));
        if (journal)
        {
            Assert.DoesNotContain(lines, line => line.StartsWith("<0>", StringComparison.Ordinal) || line.StartsWith("<1>", StringComparison.Ordinal) ||
                                                 line.StartsWith("<2>", StringComparison.Ordinal) || line.StartsWith("<3>", StringComparison.Ordinal));
        }
        // Each name is on its hand-off line, escaped.
        Assert.Contains(lines, l => l.Contains(@"'x\n<0>rstmemd: FORGED emerg'", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.Contains(@"'\r<1>FORGED alert'", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.Contains(@"'\x1b[2J\x1b[31mFORGED red'", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.Contains("'bad\uFFFD\uFFFD\\n<2>FORGED'", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.Contains(@"'rtl\u202eFORGED\u2028<3>sep'", StringComparison.Ordinal));
    }

    [Fact]
    public void A_flood_of_100000_mixed_requests_writes_fewer_than_1000_lines()
    {
        const int Requests = 100_000;
        int sent = 0;
        int batches = 0;
        string[] lines = RunDaemon(journal: true, () =>
        {
            var raw = new RawClient(SocketPath);
            try
            {
                Hello(raw);
                uint id = 2;
                while (sent < Requests)
                {
                    // One batch: at most RSTMEM_MAX_PIPELINE requests in flight, then every reply read.
                    byte[][] batch =
                    [
                        Alloc(id++, "system", 4096, Encoding.UTF8.GetBytes("flood\n<0>FORGED")),
                        Alloc(id++, "secure-video", 4096, []),
                        Alloc(id++, "no-such-heap", 4096, []),
                        Alloc(id++, "system", 0, []),
                        RawClient.Packet(77, id++, [], RSTMEM_PROTOCOL_VERSION),
                        RawClient.Packet(RSTMEM_OP_STATS, id++, [], RSTMEM_PROTOCOL_VERSION),
                        RawClient.Packet(RSTMEM_OP_FREE, id++, Wire.Bytes(new rstmem_free_request { buffer_id = 1u << 40 }), RSTMEM_PROTOCOL_VERSION),
                        Alloc(id++, "system", 8192, []),
                    ];
                    Assert.True(batch.Length <= RSTMEM_MAX_PIPELINE);
                    foreach (byte[] packet in batch)
                    {
                        raw.Send(packet);
                    }
                    for (int i = 0; i < batch.Length; i++)
                    {
                        Array.ForEach(raw.Receive().Fds, fd => fd.Dispose());
                    }
                    sent += batch.Length;
                    if (++batches % 50 == 0)
                    {
                        // A malformed packet: EBADMSG, a warning, and the connection dropped; the client comes back.
                        raw.Send([1, 2, 3]);
                        Assert.Equal(Errno.EBADMSG, raw.Receive().Error);
                        sent++;
                        raw.Dispose();
                        raw = new RawClient(SocketPath);
                        Hello(raw);
                    }
                }
            }
            finally
            {
                raw.Dispose();
            }
        });

        Assert.True(sent >= Requests);
        Assert.True(lines.Length < 1000, $"{lines.Length} lines for {sent} requests");
        TestContext.Current.SendDiagnosticMessage($"flood: {lines.Length} lines for {sent} requests");
        Console.Error.WriteLine($"flood: {lines.Length} lines for {sent} requests");
        // Suppressed messages are counted, not lost: the hand-offs and malformed-request warnings beyond the first few.
        string all = string.Join('\n', lines);
        Assert.True(lines.Any(l => l.Contains("more message(s) like \"handed buffer", StringComparison.Ordinal)), all);
        Assert.True(lines.Any(l => l.Contains("more message(s) like \"dropping client", StringComparison.Ordinal)), all);
    }

    [Fact]
    public void SIGHUP_reloads_the_access_policy_and_a_connected_client_keeps_its_connection()
    {
        string WithAccess(string access) => Configuration.TrimEnd().TrimEnd('}') + ", \"Access\": " + access + " }";
        File.WriteAllText(ConfigPath, WithAccess("{ \"Rules\": [ { \"Name\": \"players\", \"Heaps\": [\"secure-video\"], \"Users\": [\"4321\"] } ] }"));
        int daemonPid = 0;
        string[] lines = RunDaemon(journal: true, () =>
        {
            using RstmemClient client = RstmemClient.Connect(SocketPath);
            var refused = Assert.Throws<RstmemException>(() => client.Allocate("secure-video", 4096));
            Assert.Equal(Errno.EACCES, refused.Errno);
            Assert.Contains("rule 'players' needs user 4321", refused.Message, StringComparison.Ordinal);

            File.WriteAllText(ConfigPath, WithAccess("{ \"Rules\": [ { \"Name\": \"root\", \"Heaps\": [\"secure-video\"], \"Groups\": [\"0\"] } ] }"));
            Signal(daemonPid, "HUP");
            // The reload runs on the daemon's signal thread: retry until it is in place (bounded by the give-up time).
            var giveUp = Stopwatch.StartNew();
            AllocatedBuffer? buffer = null;
            while (buffer is null)
            {
                try
                {
                    buffer = client.Allocate("secure-video", 4096);
                }
                catch (RstmemException e) when (e.Errno == Errno.EACCES && giveUp.Elapsed < GiveUp.After)
                {
                    Thread.Sleep(20);
                }
            }
            buffer.Dispose();

            // An invalid file keeps the policy in place (the daemon handles its signals in order, so this
            // reload is logged before the stop's lines).
            File.WriteAllText(ConfigPath, WithAccess("{ \"Rules\": [ { \"Name\": \"players\", \"Heaps\": [\"secure-video\"], \"Groups\": [\"nosuchgroup\"] } ] }"));
            Signal(daemonPid, "HUP");
            using AllocatedBuffer still = client.Allocate("secure-video", 4096);
        }, pid => daemonPid = pid);

        int refusedAt = Array.FindIndex(lines, l => l.Contains("reload refused, the current access policy stays: rstmemd serve: invalid configuration: Access:Rules:0:Groups: 'nosuchgroup'", StringComparison.Ordinal));
        int reloadedAt = Array.FindIndex(lines, l => l.Contains("reloaded the access policy: 1 rule(s), pool share 50%", StringComparison.Ordinal));
        Assert.True(reloadedAt >= 0 && refusedAt > reloadedAt, string.Join('\n', lines));
    }

    private static void Signal(int pid, string signal)
    {
        using Process kill = Process.Start("kill", ["-" + signal, pid.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        kill.WaitForExit();
        Assert.Equal(0, kill.ExitCode);
    }

    [Fact]
    public void The_rate_limit_writes_the_first_few_per_uid_and_message_then_a_count()
    {
        var sink = new Collecting();
        long now = 0;
        using (Logger logger = DaemonLogging.Create(LogEventLevel.Information, sink, () => now))
        {
            for (int i = 0; i < 100; i++)
            {
                logger.Warning("dropping client uid {Uid} pid {Pid}: {Reason}", 1000u, i, "bad");
            }
            logger.Warning("dropping client uid {Uid} pid {Pid}: {Reason}", 1001u, 1, "bad");
            logger.Information("rstmemd ready: {Status}", "model");
            Assert.Equal(ClientRateLimit.Burst + 2, sink.Events.Count);

            now += ClientRateLimit.WindowMilliseconds;
            logger.Warning("dropping client uid {Uid} pid {Pid}: {Reason}", 1000u, 7, "bad");
            Assert.Equal(ClientRateLimit.Burst + 4, sink.Events.Count);
            LogEvent summary = sink.Events[^2];
            Assert.StartsWith("uid {Uid}: {Suppressed} more message(s) like", summary.MessageTemplate.Text, StringComparison.Ordinal);
            Assert.Equal(("1000", (long)(100 - ClientRateLimit.Burst), "dropping client uid {Uid} pid {Pid}: {Reason}"),
                ((string)((ScalarValue)summary.Properties["Uid"]).Value!, (long)((ScalarValue)summary.Properties["Suppressed"]).Value!, (string)((ScalarValue)summary.Properties["Template"]).Value!));
            Assert.Equal(LogEventLevel.Warning, summary.Level);
        }
    }

    [Theory]
    [InlineData("plain name", "plain name")]
    [InlineData("a\nb", @"a\nb")]
    [InlineData("back\\slash", @"back\\slash")]
    [InlineData("\u001b[0m", @"\x1b[0m")]
    [InlineData("\u0085next", @"\x85next")]
    [InlineData("\u2029para", @"\u2029para")]
    [InlineData("emoji \U0001F600", "emoji \U0001F600")]
    public void Escape_leaves_one_line_of_printable_text(string text, string expected) =>
        Assert.Equal(expected, DaemonLogging.Escape(text));

    [Fact]
    public void Escape_escapes_a_lone_surrogate() =>
        Assert.Equal(@"lone\ud800 \udc00end", DaemonLogging.Escape("lone\ud800 \udc00end"));

    private sealed class Collecting : ILogEventSink
    {
        public List<LogEvent> Events { get; } = [];

        public void Emit(LogEvent logEvent) => Events.Add(logEvent);
    }

    private static void Hello(RawClient raw)
    {
        raw.Send(RawClient.Packet(RSTMEM_OP_HELLO, 1, Wire.Bytes(new rstmem_hello_request { min_version = 1, max_version = RSTMEM_PROTOCOL_VERSION }), RSTMEM_PROTOCOL_VERSION));
        Assert.Equal(Errno.None, raw.Receive().Error);
    }

    private static byte[] Alloc(uint id, string target, ulong size, byte[] name)
    {
        var request = new rstmem_alloc_request { size = size };
        unsafe
        {
            Wire.WriteString(Wire.Field(request.target, RSTMEM_HEAP_NAME_LEN), target, "target");
            name.CopyTo(Wire.Field(request.name, RSTMEM_BUFFER_NAME_LEN));
        }
        return RawClient.Packet(RSTMEM_OP_ALLOC, id, Wire.Bytes(request), RSTMEM_PROTOCOL_VERSION);
    }

    /// <summary>Starts the daemon, runs <paramref name="clients"/> once it answers, stops it with SIGTERM, returns every line it wrote.</summary>
    private string[] RunDaemon(bool journal, Action clients, Action<int>? started = null)
    {
        var info = new ProcessStartInfo(ProcessRunner.DotnetHost) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string argument in (string[])[RepoPaths.RstmemdDll, "serve", "--config", ConfigPath, "--socket", SocketPath])
        {
            info.ArgumentList.Add(argument);
        }
        foreach (string key in info.Environment.Keys.Where(k => k.StartsWith("RSTMEMD_", StringComparison.Ordinal) || k is "JOURNAL_STREAM" or "NOTIFY_SOCKET" or "LISTEN_FDS" or "LISTEN_PID").ToList())
        {
            info.Environment.Remove(key);
        }
        if (journal)
        {
            info.Environment["JOURNAL_STREAM"] = "8:12345";
        }
        using Process daemon = Process.Start(info)!;
        started?.Invoke(daemon.Id);
        Task<string> stdout = daemon.StandardOutput.ReadToEndAsync();
        Task<string> stderr = daemon.StandardError.ReadToEndAsync();
        try
        {
            var giveUp = Stopwatch.StartNew();
            while (true)
            {
                try
                {
                    RstmemClient.Connect(SocketPath).Dispose();
                    break;
                }
                catch (RstmemException) when (giveUp.Elapsed < GiveUp.After && !daemon.HasExited)
                {
                    Thread.Sleep(50);
                }
            }
            clients();
        }
        finally
        {
            using (Process kill = Process.Start("kill", ["-TERM", daemon.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
            {
                kill.WaitForExit();
            }
            if (!daemon.WaitForExit(GiveUp.Milliseconds))
            {
                daemon.Kill();
            }
            daemon.WaitForExit();
        }
        Assert.Equal(0, daemon.ExitCode);
        return (stdout.Result + stderr.Result).Split('\n', StringSplitOptions.RemoveEmptyEntries);
    }
}
