using System.Diagnostics;
using System.Globalization;
using System.Text;
using Rstmem.Daemon.Client;
using Rstmem.Daemon.Protocol;
using Rstmem.Interop;
using Rstmem.Interop.Uapi;
using Rstmem.Tests.Support;

namespace Rstmem.Tests.Broker;

/// <summary>
/// <c>rstmemd serve</c> as a process: systemd notification, signals, logging format, socket handling, configuration errors.
/// Every daemon here reads this class's own configuration file (never /etc/rstmemd/rstmemd.json, never RSTMEMD_*
/// variables of the environment the tests run in), and the tests assert the numbers that file states.
/// </summary>
public sealed class ServeProcessTests : IDisposable
{
    private const long SecureVideoBytes = 8L << 20;
    private const long SystemHeapBytes = 64L << 20;

    /// <summary>
    /// A mainline model with one use case and the system heap: no CMA heap, the
    /// other use cases disabled. Sizes are MiB multiples: whole pages on 4, 16
    /// and 64 KiB page kernels.
    /// </summary>
    private static readonly string Configuration = $$"""
        {
          "Backend": "model",
          "Model": {
            "Generation": "mainline",
            "SystemHeapSize": "{{ByteSize.Format(SystemHeapBytes)}}",
            "CmaHeapName": "reserved",
            "CmaHeapSize": "0",
            "TeeShmPool": true,
            "UseCases": {
              "secure-video": { "Enabled": true, "Kind": "static", "Size": "{{ByteSize.Format(SecureVideoBytes)}}" },
              "trusted-ui": { "Enabled": false },
              "secure-video-record": { "Enabled": false }
            }
          },
          "Limits": { "MaxBuffersPerUser": 4096, "MaxBytesPerUser": "1GiB", "MaxConnectionsPerUser": 64 }
        }
        """;

    /// <summary>The heaps <see cref="Configuration"/> gives, with their sizes.</summary>
    private static readonly (string Name, ulong TotalBytes)[] Heaps =
        [("protected,secure-video", (ulong)SecureVideoBytes), ("system", (ulong)SystemHeapBytes)];

    private readonly string directory = Directory.CreateTempSubdirectory("rstmemd-serve-").FullName;

    public ServeProcessTests()
    {
        File.WriteAllText(ConfigPath, Configuration);
    }

    private string SocketPath => Path.Combine(directory, "rstmemd.sock");

    private string ConfigPath => Path.Combine(directory, "rstmemd.json");

    private static long Page => BrokerFixture.Page;

    public void Dispose() => Directory.Delete(directory, recursive: true);

    /// <summary><c>serve</c> on this test's socket and configuration, then <paramref name="more"/>.</summary>
    private string[] Serve(params string[] more) => ["serve", "--config", ConfigPath, "--socket", SocketPath, .. more];

    private static ProcessStartInfo Info(string fileName, IEnumerable<string> arguments, IDictionary<string, string>? environment)
    {
        var info = new ProcessStartInfo(fileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }
        // Only what a test sets: not the environment the tests happen to run in.
        foreach (string key in info.Environment.Keys.Where(k => k.StartsWith("RSTMEMD_", StringComparison.Ordinal) || k is "JOURNAL_STREAM" or "NOTIFY_SOCKET" or "LISTEN_FDS" or "LISTEN_PID").ToList())
        {
            info.Environment.Remove(key);
        }
        foreach (var (key, value) in environment ?? new Dictionary<string, string>())
        {
            info.Environment[key] = value;
        }
        return info;
    }

    private static Process Start(IEnumerable<string> arguments, IDictionary<string, string>? environment = null) =>
        Process.Start(Info(ProcessRunner.DotnetHost, [RepoPaths.RstmemdDll, .. arguments], environment))!;

    /// <summary>Runs rstmemd to its exit (a daemon that does not start), giving up after <see cref="GiveUp.After"/>.</summary>
    private static ProcessResult RunToExit(IEnumerable<string> arguments)
    {
        using Process process = Start(arguments);
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(GiveUp.Milliseconds))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"rstmemd {string.Join(' ', arguments)} still running after {GiveUp.After.TotalSeconds} s (the give-up bound); it was expected to exit");
        }
        process.WaitForExit();
        return new ProcessResult(process.ExitCode, stdout.Result, stderr.Result);
    }

    private static RstmemClient ConnectWhenReady(string path, Process daemon)
    {
        var giveUp = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                return RstmemClient.Connect(path);
            }
            catch (RstmemException) when (giveUp.Elapsed < GiveUp.After && !daemon.HasExited)
            {
                Thread.Sleep(50);
            }
        }
    }

    private static void Stop(Process daemon)
    {
        if (!daemon.HasExited)
        {
            daemon.Kill();
        }
        daemon.WaitForExit();
    }

    [Fact]
    public async Task Notifies_systemd_logs_with_priorities_and_on_SIGTERM_exits_0_without_waiting_for_its_clients()
    {
        string notifyPath = Path.Combine(directory, "notify.sock");
        Assert.Equal(Errno.None, Interop.Sys.TrySocket(Sockets.AF_UNIX, Sockets.SOCK_DGRAM, 0, out SafeFd notify));
        using (notify)
        {
            Assert.Equal(Errno.None, Interop.Sys.TryBindUnix(notify, notifyPath));
            using Process daemon = Start(Serve(), new Dictionary<string, string> { ["NOTIFY_SOCKET"] = notifyPath, ["JOURNAL_STREAM"] = "8:12345" });
            try
            {
                Task<string> stderr = daemon.StandardError.ReadToEndAsync(TestContext.Current.CancellationToken);

                string ready = ReadDatagram(notify, GiveUp.Milliseconds);
                Assert.Contains("READY=1", ready, StringComparison.Ordinal);
                Assert.Contains($"STATUS=the reference kernel model, {Heaps.Length} heap(s), listening on {SocketPath}", ready, StringComparison.Ordinal);
                using (RstmemClient client = RstmemClient.Connect(SocketPath))
                {
                    Assert.Equal(Heaps, client.ListHeaps().Select(h => (h.Name, h.TotalBytes)).OrderBy(h => h.Name, StringComparer.Ordinal));
                    using AllocatedBuffer buffer = client.Allocate("secure-video", Page);
                }

                // At SIGTERM one client is connected and idle, and another has its socket full of
                // replies with one more held by the daemon. Neither reads nor closes: the daemon
                // must exit anyway.
                using var idle = new RawClient(SocketPath);
                using StalledClient stalled = StalledClient.Establish(SocketPath, id => RawClient.Packet(RstmemProtocol.RSTMEM_OP_STATS, id, []));
                Assert.Equal(0, ProcessRunner.Run("kill", ["-TERM", daemon.Id.ToString(CultureInfo.InvariantCulture)]).ExitCode);
                Assert.True(daemon.WaitForExit(GiveUp.Milliseconds), $"rstmemd still running {GiveUp.After.TotalSeconds} s after SIGTERM (the give-up bound), with an idle and a stalled client connected");
                daemon.WaitForExit();
                Assert.Equal(0, daemon.ExitCode);
                Assert.True(idle.IsClosedByPeer(), "the idle client's connection was closed by the daemon's exit");
                Assert.Contains("STOPPING=1", ReadDatagram(notify, 0), StringComparison.Ordinal); // sent before the exit
                Assert.False(File.Exists(SocketPath));

                string[] lines = (await stderr).Split('\n', StringSplitOptions.RemoveEmptyEntries);
                Assert.All(lines, line => Assert.Matches(@"^<[0-7]>", line));
                Assert.Contains(lines, l => l.StartsWith("<6>rstmemd ready", StringComparison.Ordinal));
                Assert.Contains(lines, l => l.StartsWith("<6>handed buffer 1 'svp:", StringComparison.Ordinal) && l.Contains("uid ", StringComparison.Ordinal));
                // The journal stamps lines itself: no date or time of day in them.
                Assert.All(lines, line => Assert.DoesNotMatch(@"\d{4}-\d{2}-\d{2}|\d{2}:\d{2}:\d{2}", line));
            }
            finally
            {
                Stop(daemon);
            }
        }
    }

    [Fact]
    public void SIGHUP_is_a_reload_not_an_exit_and_connected_clients_keep_their_connections()
    {
        string notifyPath = Path.Combine(directory, "notify.sock");
        Assert.Equal(Errno.None, Interop.Sys.TrySocket(Sockets.AF_UNIX, Sockets.SOCK_DGRAM, 0, out SafeFd notify));
        using (notify)
        {
            Assert.Equal(Errno.None, Interop.Sys.TryBindUnix(notify, notifyPath));
            // Started with SIGHUP and SIGTERM ignored, which exec passes on (nohup ignores SIGHUP):
            // the daemon still reloads and stops. A run of the tests under nohup found the reload
            // never happening (2026-12-03), until the daemon took SIGHUP's default back.
            using Process daemon = Process.Start(Info("/bin/sh", ["-c", "trap '' HUP TERM; exec \"$@\"", "sh", ProcessRunner.DotnetHost, RepoPaths.RstmemdDll, .. Serve()],
                new Dictionary<string, string> { ["NOTIFY_SOCKET"] = notifyPath }))!;
            try
            {
                Assert.Contains("READY=1", ReadDatagram(notify, GiveUp.Milliseconds), StringComparison.Ordinal);
                using RstmemClient client = RstmemClient.Connect(SocketPath);
                using AllocatedBuffer before = client.Allocate("secure-video", Page);

                Assert.Equal(0, ProcessRunner.Run("kill", ["-HUP", daemon.Id.ToString(CultureInfo.InvariantCulture)]).ExitCode);
                // systemd's reload protocol: RELOADING=1, then READY=1 once done.
                Assert.Contains("RELOADING=1", ReadDatagram(notify, GiveUp.Milliseconds), StringComparison.Ordinal);
                Assert.Contains("READY=1", ReadDatagram(notify, GiveUp.Milliseconds), StringComparison.Ordinal);

                Assert.False(daemon.HasExited, "rstmemd exited on SIGHUP");
                using (AllocatedBuffer after = client.Allocate("secure-video", Page)) // the same connection
                {
                    Assert.Equal(before.Id + 1, after.Id);
                }

                Assert.Equal(0, ProcessRunner.Run("kill", ["-TERM", daemon.Id.ToString(CultureInfo.InvariantCulture)]).ExitCode);
                Assert.True(daemon.WaitForExit(GiveUp.Milliseconds), $"rstmemd still running {GiveUp.After.TotalSeconds} s after SIGTERM (the give-up bound)");
                daemon.WaitForExit();
                Assert.Equal(0, daemon.ExitCode);
            }
            finally
            {
                Stop(daemon);
            }
        }
    }

    private static string ReadDatagram(SafeFd socket, int timeoutMilliseconds)
    {
        Span<pollfd> fds = [new pollfd { fd = socket.DangerousFd, events = Poll.POLLIN }];
        Assert.Equal(Errno.None, Interop.Sys.TryPoll(fds, timeoutMilliseconds, out int ready));
        Assert.True(ready == 1, "no notification arrived");
        byte[] buffer = new byte[4096];
        Assert.Equal(Errno.None, Interop.Sys.TryRead(socket, buffer, out int length));
        return Encoding.UTF8.GetString(buffer, 0, length);
    }

    [Fact]
    public void A_second_daemon_on_a_live_socket_refuses_to_start_and_a_stale_socket_is_replaced()
    {
        // A stale socket file: bound, then its listener gone.
        Assert.Equal(Errno.None, Interop.Sys.TrySocket(Sockets.AF_UNIX, Sockets.SOCK_SEQPACKET, 0, out SafeFd stale));
        Assert.Equal(Errno.None, Interop.Sys.TryBindUnix(stale, SocketPath));
        stale.Dispose();
        Assert.True(File.Exists(SocketPath));

        using Process first = Start(Serve());
        try
        {
            using (RstmemClient client = ConnectWhenReady(SocketPath, first))
            {
                Assert.Equal(RstmemProtocol.RSTMEM_PROTOCOL_VERSION, client.Server.Version);
            }
            ProcessResult second = RunToExit(Serve());
            Assert.Equal(1, second.ExitCode);
            Assert.Contains($"another rstmemd is already serving on {SocketPath} (pid {first.Id})", second.Stderr, StringComparison.Ordinal);
        }
        finally
        {
            Stop(first); // SIGKILL: leaves the socket file behind, stale
        }
        using Process third = Start(Serve());
        try
        {
            using RstmemClient client = ConnectWhenReady(SocketPath, third);
            Assert.Equal(Heaps.Length, client.ListHeaps().Count);
        }
        finally
        {
            Stop(third);
        }
    }

    [Fact]
    public void A_path_that_is_not_a_socket_is_never_replaced()
    {
        File.WriteAllText(SocketPath, "precious");
        ProcessResult result = RunToExit(Serve());
        Assert.Equal(1, result.ExitCode);
        Assert.Contains($"{SocketPath} exists and is not a socket", result.Stderr, StringComparison.Ordinal);
        Assert.Equal("precious", File.ReadAllText(SocketPath));
    }

    public static TheoryData<string[], string, string> BadConfigurations => new()
    {
        { ["--backend", "gpu"], "", "Backend: 'gpu' is not a backend; expected auto, real, model, tee or dma-heap" },
        { ["--generation", "v5"], "", "Model:Generation: 'v5' is not a kernel generation; expected v4, v6 or mainline" },
        { [], """{"Model": {"UseCases": {"secure-video": {"Size": "12X"}}}}""", "Model:UseCases:secure-video:Size: '12X' is not a size; expected a byte count" },
        { [], """{"Limits": {"MaxBytesPerUser": "lots"}}""", "Limits:MaxBytesPerUser: 'lots' is not a size" },
        { [], """{"SocketMode": "0999"}""", "SocketMode: '0999' is not a permission mode" },
        { [], """{"Limits": {"MaxBuffersPerUser": "many"}}""", "'many' at 'Limits:MaxBuffersPerUser' to type 'System.Int32'" },
        { [], """{"Model": {"CmaHeapSize": "5000"}}""", "Model:CmaHeapSize: '5000' (5000 bytes) is not a whole number of pages" },
    };

    /// <param name="json">The configuration file; empty for this class's valid one.</param>
    [Theory]
    [MemberData(nameof(BadConfigurations))]
    public void Invalid_configuration_stops_startup_naming_key_value_and_expectation(string[] arguments, string json, string expected)
    {
        if (json.Length > 0)
        {
            File.WriteAllText(ConfigPath, json);
        }
        ProcessResult result = RunToExit(Serve(arguments));
        Assert.Equal(1, result.ExitCode);
        Assert.Contains(expected, result.Stderr, StringComparison.Ordinal);
        Assert.False(File.Exists(SocketPath));
    }

    [Fact]
    public void Environment_variables_override_the_file()
    {
        File.WriteAllText(ConfigPath, """{"Backend": "model", "Model": {"Generation": "v6"}}""");
        using Process daemon = Start(Serve(), new Dictionary<string, string> { ["RSTMEMD_MODEL__GENERATION"] = "v4" });
        try
        {
            using RstmemClient client = ConnectWhenReady(SocketPath, daemon);
            Assert.Equal(RstmemProtocol.RSTMEM_GENERATION_V4, client.Server.Generation);
        }
        finally
        {
            Stop(daemon);
        }
    }

    [Fact]
    public void Socket_activation_serves_on_the_socket_systemd_passed()
    {
        // systemd-socket-activate binds the socket, sets LISTEN_FDS/LISTEN_PID and execs the daemon.
        using Process activated = Process.Start(Info("systemd-socket-activate",
            ["--seqpacket", "-l", SocketPath, ProcessRunner.DotnetHost, RepoPaths.RstmemdDll, "serve", "--config", ConfigPath], null))!;
        try
        {
            using (RstmemClient client = ConnectWhenReady(SocketPath, activated))
            {
                using AllocatedBuffer buffer = client.Allocate("system", Page + 1, AllocTarget.Heap);
                Assert.Equal(2 * Page, buffer.Size);
            }
            Assert.Equal(0, ProcessRunner.Run("kill", ["-TERM", activated.Id.ToString(CultureInfo.InvariantCulture)]).ExitCode);
            Assert.True(activated.WaitForExit(GiveUp.Milliseconds), $"still running {GiveUp.After.TotalSeconds} s after SIGTERM (the give-up bound)");
            activated.WaitForExit();
            Assert.Equal(0, activated.ExitCode);
        }
        finally
        {
            Stop(activated);
        }
    }
}
