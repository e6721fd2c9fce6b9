using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Rstmem.Daemon.Client;
using Rstmem.Interop.Model;

namespace Rstmem.Daemon.Cli;

/// <summary>
/// <c>rstmemd bench</c>: allocation round trip (request sent to descriptor in
/// hand) and throughput of rstmemd on the model, against a C baseline that
/// does the same work (src/Native/bench/rstmem-bench-server.c: an epoll
/// server sending a fresh sealed memfd per request), measured in the same
/// run by the same C load generator, unpinned and with server and clients
/// pinned to CPU 0 alike.
/// </summary>
internal static class BenchCommand
{
    private sealed record Result(double P50, double P99, double Throughput, long RoundTrips, long Errors);

    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var clients = new Option<int>("--clients") { Description = "clients in the many-client runs (default 16)", DefaultValueFactory = _ => 16 };
        var size = new Option<string>("--size") { Description = "buffer size (default 1M)", DefaultValueFactory = _ => "1M" };
        var seconds = new Option<double>("--seconds") { Description = "length of each run (default 3)", DefaultValueFactory = _ => 3 };
        var command = new Command("bench", "measure rstmemd (on the model) against a C baseline doing the same work") { clients, size, seconds };
        command.SetAction(result =>
        {
            int n = result.GetValue(clients);
            double t = result.GetValue(seconds);
            string sizeText = result.GetValue(size)!;
            if (!ByteSize.TryParse(sizeText, out long bytes) || bytes <= 0)
            {
                return RstmemdCli.UsageError(stderr, $"bench: --size: '{sizeText}' is not a size; expected {ByteSize.Expected}");
            }
            if (n < 1 || n > 256)
            {
                return RstmemdCli.UsageError(stderr, $"bench: --clients: '{n}' is out of range; expected 1 to 256");
            }
            if (t is <= 0 or > 600)
            {
                return RstmemdCli.UsageError(stderr, $"bench: --seconds: '{t}' is out of range; expected more than 0 and at most 600");
            }
            try
            {
                return Run(n, bytes, t, stdout);
            }
            catch (Exception e) when (e is InvalidOperationException or RstmemException or IOException or System.ComponentModel.Win32Exception)
            {
                stderr.WriteLine($"rstmemd bench: {e.Message}");
                return RstmemdCli.ExitFailure;
            }
        });
        return command;
    }

    private static int Run(int clients, long size, double seconds, TextWriter stdout)
    {
        string native = FindNativeDirectory();
        string directory = Directory.CreateTempSubdirectory("rstmemd-bench-").FullName;
        try
        {
            stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"rstmemd bench: {ByteSize.Format(size)} buffers, {seconds:0.#} s per run, {Environment.ProcessorCount} CPUs; round trip = request sent to descriptor in hand"));
            stdout.WriteLine("load generator: src/Native/bench/rstmem-bench-client.c against both servers; pinned = server and clients on CPU 0 (taskset -c 0)");
            stdout.WriteLine();
            stdout.WriteLine($"{"clients",7}  {"pinning",-8}  {"server",-22}  {"p50 us",8}  {"p99 us",8}  {"allocs/s",10}");
            var rows = new List<(int Clients, bool Pinned, Result Ours, Result Baseline)>();
            foreach (int n in clients == 1 ? new[] { 1 } : [1, clients])
            {
                foreach (bool pinned in new[] { false, true })
                {
                    Result ours = Measure(native, directory, pinned, n, size, seconds, daemon: true);
                    Result baseline = Measure(native, directory, pinned, n, size, seconds, daemon: false);
                    rows.Add((n, pinned, ours, baseline));
                    Print(stdout, n, pinned, "rstmemd (model)", ours);
                    Print(stdout, n, pinned, "C epoll baseline", baseline);
                }
            }
            stdout.WriteLine();
            stdout.WriteLine($"{"clients",7}  {"pinning",-8}  {"p50 ratio",9}  {"p99 ratio",9}  {"throughput ratio",16}  targets");
            foreach (var (n, pinned, ours, baseline) in rows)
            {
                double p50 = ours.P50 / baseline.P50;
                double p99 = ours.P99 / baseline.P99;
                double throughput = ours.Throughput / baseline.Throughput;
                string verdict = n == 1
                    ? $"p50 <= 1.5x: {(p50 <= 1.5 ? "met" : "NOT met")}; p99 <= 3x: {(p99 <= 3 ? "met" : "NOT met")}"
                    : $"throughput >= 0.6x: {(throughput >= 0.6 ? "met" : "NOT met")}";
                stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{n,7}  {(pinned ? "cpu 0" : "none"),-8}  {p50,8:F2}x  {p99,8:F2}x  {throughput,15:F2}x  {verdict}"));
            }
            return rows.Any(r => r.Ours.Errors > 0 || r.Baseline.Errors > 0) ? RstmemdCli.ExitFailure : RstmemdCli.ExitOk;
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    private static void Print(TextWriter stdout, int clients, bool pinned, string server, Result r) =>
        stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{clients,7}  {(pinned ? "cpu 0" : "none"),-8}  {server,-22}  {r.P50,8:F1}  {r.P99,8:F1}  {r.Throughput,10:F0}"));

    private static Result Measure(string native, string directory, bool pinned, int clients, long size, double seconds, bool daemon)
    {
        string socket = Path.Combine(directory, daemon ? "rstmemd.sock" : "baseline.sock");
        using Process server = daemon ? StartDaemon(directory, socket, pinned) : StartBaseline(native, socket, pinned);
        try
        {
            WaitUntilServing(socket, server, daemon);
            ProcessStartInfo load = Command(pinned, Path.Combine(native, "rstmem-bench-client"),
                ["--socket", socket, "--clients", clients.ToString(CultureInfo.InvariantCulture), "--size", size.ToString(CultureInfo.InvariantCulture),
                 "--seconds", seconds.ToString(CultureInfo.InvariantCulture), "--target", "secure-video"]);
            load.RedirectStandardOutput = true;
            load.RedirectStandardError = true;
            using Process generator = Process.Start(load)!;
            Task<string> stderr = generator.StandardError.ReadToEndAsync();
            string output = generator.StandardOutput.ReadToEnd();
            generator.WaitForExit();
            if (generator.ExitCode != 0)
            {
                throw new InvalidOperationException($"the load generator failed against {(daemon ? "rstmemd" : "the baseline")}: {stderr.GetAwaiter().GetResult().Trim()}");
            }
            using JsonDocument json = JsonDocument.Parse(output);
            JsonElement root = json.RootElement;
            return new Result(root.GetProperty("p50_us").GetDouble(), root.GetProperty("p99_us").GetDouble(),
                root.GetProperty("throughput_per_s").GetDouble(), root.GetProperty("round_trips").GetInt64(), root.GetProperty("errors").GetInt64());
        }
        finally
        {
            if (!server.HasExited)
            {
                server.Kill();
            }
            server.WaitForExit();
        }
    }

    private static Process StartDaemon(string directory, string socket, bool pinned)
    {
        // A pool large enough that the run measures the broker, not exhaustion (memfds cost nothing until touched).
        string config = Path.Combine(directory, "bench.json");
        File.WriteAllText(config, """{"Backend": "model", "LogLevel": "Warning", "Model": {"UseCases": {"secure-video": {"Kind": "static", "Size": "64GiB"}}}, "Limits": {"MaxBuffersPerUser": 100000, "MaxBytesPerUser": "1024GiB", "MaxConnectionsPerUser": 1024}}""");
        string self = Environment.ProcessPath!;
        string[] arguments = Path.GetFileNameWithoutExtension(self) == "dotnet"
            ? [typeof(BenchCommand).Assembly.Location, "serve", "--config", config, "--socket", socket]
            : ["serve", "--config", config, "--socket", socket];
        ProcessStartInfo info = Command(pinned, self, arguments);
        info.RedirectStandardError = true;
        info.RedirectStandardOutput = true;
        return Process.Start(info)!;
    }

    private static Process StartBaseline(string native, string socket, bool pinned)
    {
        ProcessStartInfo info = Command(pinned, Path.Combine(native, "rstmem-bench-server"), [socket]);
        info.RedirectStandardOutput = true;
        info.RedirectStandardError = true;
        return Process.Start(info)!;
    }

    private static ProcessStartInfo Command(bool pinned, string program, IEnumerable<string> arguments)
    {
        var info = new ProcessStartInfo(pinned ? "taskset" : program) { UseShellExecute = false };
        if (pinned)
        {
            info.ArgumentList.Add("-c");
            info.ArgumentList.Add("0");
            info.ArgumentList.Add(program);
        }
        foreach (string argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }
        return info;
    }

    private static void WaitUntilServing(string socket, Process server, bool daemon)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            if (server.HasExited)
            {
                throw new InvalidOperationException($"{(daemon ? "rstmemd" : "the baseline server")} exited with {server.ExitCode}: {server.StandardError.ReadToEnd().Trim()}");
            }
            try
            {
                using RstmemClient probe = RstmemClient.Connect(socket);
                return;
            }
            catch (RstmemException) when (DateTime.UtcNow < deadline)
            {
                Thread.Sleep(50);
            }
        }
    }

    /// <summary>The C programs built by ./build.sh (build/native), found from this binary upwards or through RSTMEM_NATIVE_DIR.</summary>
    private static string FindNativeDirectory()
    {
        string? configured = Environment.GetEnvironmentVariable("RSTMEM_NATIVE_DIR");
        if (!string.IsNullOrEmpty(configured))
        {
            return configured;
        }
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "build", "native");
            if (File.Exists(Path.Combine(candidate, "rstmem-bench-server")))
            {
                return candidate;
            }
        }
        throw new InvalidOperationException("rstmem-bench-server and rstmem-bench-client were not found: run ./build.sh, or set RSTMEM_NATIVE_DIR to where they are");
    }
}
