using System.Diagnostics;
using System.Text;
using Rstmem.Daemon.Client;
using Rstmem.Interop;
using Rstmem.Interop.Uapi;
using Rstmem.Tests.Support;

namespace Rstmem.Tests.Broker;

/// <summary><c>rstmemd serve</c> as a process: systemd notification, signals, logging format, socket handling, configuration errors.</summary>
public sealed class ServeProcessTests : IDisposable
{
    private readonly string directory = Directory.CreateTempSubdirectory("rstmemd-serve-").FullName;

    private string SocketPath => Path.Combine(directory, "rstmemd.sock");

    public void Dispose() => Directory.Delete(directory, recursive: true);

    private static Process Start(IEnumerable<string> arguments, IDictionary<string, string>? environment = null)
    {
        var info = new ProcessStartInfo(ProcessRunner.DotnetHost)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(RepoPaths.RstmemdDll);
        foreach (string argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }
        info.Environment.Remove("JOURNAL_STREAM");
        info.Environment.Remove("NOTIFY_SOCKET");
        foreach (var (key, value) in environment ?? new Dictionary<string, string>())
        {
            info.Environment[key] = value;
        }
        return Process.Start(info)!;
    }

    private static RstmemClient ConnectWhenReady(string path, Process daemon)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            try
            {
                return RstmemClient.Connect(path);
            }
            catch (RstmemException) when (DateTime.UtcNow < deadline && !daemon.HasExited)
            {
                Thread.Sleep(50);
            }
        }
    }

    [Fact]
    public async Task Notifies_systemd_logs_with_priorities_and_exits_0_within_2_seconds_of_SIGTERM()
    {
        string notifyPath = Path.Combine(directory, "notify.sock");
        Assert.Equal(Errno.None, Interop.Sys.TrySocket(Sockets.AF_UNIX, Sockets.SOCK_DGRAM, 0, out SafeFd notify));
        using (notify)
        {
            Assert.Equal(Errno.None, Interop.Sys.TryBindUnix(notify, notifyPath));
            using Process daemon = Start(["serve", "--backend", "model", "--socket", SocketPath],
                new Dictionary<string, string> { ["NOTIFY_SOCKET"] = notifyPath, ["JOURNAL_STREAM"] = "8:12345" });
            Task<string> stderr = daemon.StandardError.ReadToEndAsync(TestContext.Current.CancellationToken);

            string ready = ReadDatagram(notify, 30_000);
            Assert.Contains("READY=1", ready, StringComparison.Ordinal);
            Assert.Matches(@"STATUS=the reference kernel model, 5 heap\(s\), listening on .*rstmemd\.sock", ready);
            using (RstmemClient client = RstmemClient.Connect(SocketPath))
            {
                Assert.Equal(5, client.ListHeaps().Count);
                using AllocatedBuffer buffer = client.Allocate("secure-video", 4096);
            }

            var clock = Stopwatch.StartNew();
            Assert.Equal(0, ProcessRunner.Run("kill", ["-TERM", daemon.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]).ExitCode);
            Assert.True(daemon.WaitForExit(5000), "the daemon exits after SIGTERM");
            clock.Stop();
            Assert.Equal(0, daemon.ExitCode);
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(2), $"exit took {clock.Elapsed}");
            Assert.Contains("STOPPING=1", ReadDatagram(notify, 1000), StringComparison.Ordinal);
            Assert.False(File.Exists(SocketPath));

            string[] lines = (await stderr).Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.All(lines, line => Assert.Matches(@"^<[0-7]>", line));
            Assert.Contains(lines, l => l.StartsWith("<6>rstmemd ready", StringComparison.Ordinal));
            Assert.Contains(lines, l => l.StartsWith("<6>handed buffer 1 'svp:", StringComparison.Ordinal) && l.Contains("uid ", StringComparison.Ordinal));
            Assert.DoesNotContain(lines, l => l.Contains(DateTime.UtcNow.ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal));
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

        using Process first = Start(["serve", "--backend", "model", "--socket", SocketPath]);
        using (RstmemClient client = ConnectWhenReady(SocketPath, first))
        {
            Assert.Equal(1, client.Server.Version);
        }
        ProcessResult second = ProcessRunner.Run(ProcessRunner.DotnetHost, [RepoPaths.RstmemdDll, "serve", "--backend", "model", "--socket", SocketPath]);
        Assert.Equal(1, second.ExitCode);
        Assert.Contains($"another rstmemd is already serving on {SocketPath} (pid {first.Id})", second.Stderr, StringComparison.Ordinal);

        first.Kill(); // SIGKILL: leaves the socket file behind, stale
        first.WaitForExit();
        using Process third = Start(["serve", "--backend", "model", "--socket", SocketPath]);
        using (ConnectWhenReady(SocketPath, third))
        {
        }
        third.Kill();
        third.WaitForExit();
    }

    [Fact]
    public void A_path_that_is_not_a_socket_is_never_replaced()
    {
        File.WriteAllText(SocketPath, "precious");
        ProcessResult result = ProcessRunner.Run(ProcessRunner.DotnetHost, [RepoPaths.RstmemdDll, "serve", "--backend", "model", "--socket", SocketPath]);
        Assert.Equal(1, result.ExitCode);
        Assert.Contains("exists and is not a socket", result.Stderr, StringComparison.Ordinal);
        Assert.Equal("precious", File.ReadAllText(SocketPath));
    }

    public static TheoryData<string[], string, string> BadConfigurations => new()
    {
        { ["--backend", "gpu"], "", "Backend: 'gpu' is not a backend; expected auto, model, tee or dma-heap" },
        { ["--generation", "v5"], "", "Model:Generation: 'v5' is not a kernel generation; expected v4, v6 or mainline" },
        { [], """{"Model": {"UseCases": {"secure-video": {"Size": "12X"}}}}""", "Model:UseCases:secure-video:Size: '12X' is not a size; expected a byte count" },
        { [], """{"Limits": {"MaxBytesPerUser": "lots"}}""", "Limits:MaxBytesPerUser: 'lots' is not a size" },
        { [], """{"SocketMode": "0999"}""", "SocketMode: '0999' is not a permission mode" },
        { [], """{"Limits": {"MaxBuffersPerUser": "many"}}""", "'many' at 'Limits:MaxBuffersPerUser' to type 'System.Int32'" },
        { [], """{"Model": {"CmaHeapSize": "5000"}}""", "Model:CmaHeapSize: '5000' (5000 bytes) is not a whole number of pages" },
    };

    [Theory]
    [MemberData(nameof(BadConfigurations))]
    public void Invalid_configuration_stops_startup_naming_key_value_and_expectation(string[] arguments, string json, string expected)
    {
        var args = new List<string> { "serve", "--socket", SocketPath };
        if (json.Length > 0)
        {
            string config = Path.Combine(directory, "rstmemd.json");
            File.WriteAllText(config, json);
            args.AddRange(["--config", config]);
        }
        args.AddRange(arguments);
        ProcessResult result = ProcessRunner.Run(ProcessRunner.DotnetHost, [RepoPaths.RstmemdDll, .. args]);
        Assert.Equal(1, result.ExitCode);
        Assert.Contains(expected, result.Stderr, StringComparison.Ordinal);
        Assert.False(File.Exists(SocketPath));
    }

    [Fact]
    public void Environment_variables_override_the_file()
    {
        string config = Path.Combine(directory, "rstmemd.json");
        File.WriteAllText(config, """{"Backend": "model", "Model": {"Generation": "v6"}}""");
        using Process daemon = Start(["serve", "--config", config, "--socket", SocketPath], new Dictionary<string, string> { ["RSTMEMD_MODEL__GENERATION"] = "v4" });
        using (RstmemClient client = ConnectWhenReady(SocketPath, daemon))
        {
            Assert.Equal(Daemon.Protocol.RstmemProtocol.RSTMEM_GENERATION_V4, client.Server.Generation);
        }
        daemon.Kill();
        daemon.WaitForExit();
    }

    [Fact]
    public void Socket_activation_serves_on_the_socket_systemd_passed()
    {
        // systemd-socket-activate binds the socket, sets LISTEN_FDS/LISTEN_PID and execs the daemon.
        var info = new ProcessStartInfo("systemd-socket-activate") { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (string argument in new[] { "--seqpacket", "-l", SocketPath, ProcessRunner.DotnetHost, RepoPaths.RstmemdDll, "serve", "--backend", "model" })
        {
            info.ArgumentList.Add(argument);
        }
        using Process activated = Process.Start(info)!;
        using (RstmemClient client = ConnectWhenReady(SocketPath, activated))
        {
            using AllocatedBuffer buffer = client.Allocate("system", 5000, AllocTarget.Heap);
            Assert.Equal(8192, buffer.Size);
        }
        Assert.Equal(0, ProcessRunner.Run("kill", ["-TERM", activated.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]).ExitCode);
        Assert.True(activated.WaitForExit(5000));
        Assert.Equal(0, activated.ExitCode);
    }
}
