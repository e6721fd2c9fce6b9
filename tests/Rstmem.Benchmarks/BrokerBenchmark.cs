using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using System.Text.Json;
using Rstmem.Daemon.Client;
using Rstmem.Interop;
using Rstmem.Interop.Uapi;

namespace Rstmem.Benchmarks;

/// <summary>
/// <c>./build.sh bench broker [--clients N] [--size S] [--seconds T] [--repeat R] [--daemon PATH]</c>:
/// allocation round trip (request sent to descriptor in hand) and throughput
/// of rstmemd on the model, against a C baseline that does the same work
/// (src/Native/bench/rstmem-bench-server.c: an epoll server sending a fresh
/// sealed memfd per request), measured in the same run by the same C load
/// generator, unpinned and with server and clients pinned to CPU 0 alike,
/// and pinned again with CPU 1 kept busy (no target: on the build VM an
/// idle CPU 1 makes the pinned servers that watch releases slower, by up to
/// about 35 us a buffer, 2026-12-03: tearing a watch down queues a kernel
/// worker, which wakes on the idle CPU, and cross-CPU interrupts follow;
/// each run counts them, <see cref="CrossCpuInterrupts"/>).
/// The same C server with --lock-releases also learns each buffer's release
/// from an open file description lock on the description it sends, swept
/// every 5 ms, as the model does for a buffer in its first 50 ms
/// (src/Model/Files/LockedFiles.cs): what that costs alone, measured beside
/// the rest. With --watch-releases it watches each buffer instead (an inotify
/// watch on /proc/self/fd/N), as Linux 6.1 makes rstmemd do, for comparison.
/// Each configuration runs R times (default 3), the servers taking turns,
/// and each figure is the median of its R runs: unpinned, where the scheduler
/// puts client and server decides whether each request wakes an idle vCPU
/// (about 20 us each way on the 2-vCPU build VM), one run's p50 can land
/// either side of that, for any server. The daemon is the rstmemd.dll
/// built beside this benchmark (the JIT), or the executable given with
/// --daemon (./build.sh bench broker gives the NativeAOT one the packages ship).
/// </summary>
internal static class BrokerBenchmark
{
    /// <summary>A run's figures; <paramref name="InterruptsPerRoundTrip"/> = cross-CPU interrupts on the machine during it, per round trip (NaN when /proc/interrupts has none).</summary>
    internal sealed record Result(double P50, double P99, double Throughput, long RoundTrips, long Errors, double InterruptsPerRoundTrip);

    /// <summary>What answers the load generator.</summary>
    private enum Server
    {
        Daemon,
        Baseline,
        /// <summary>The baseline that also watches each buffer's release (--watch-releases).</summary>
        WatchingBaseline,
        /// <summary>The baseline that learns each buffer's release from a lock on it instead (--lock-releases).</summary>
        LockingBaseline,
    }

    private static readonly Server[] Servers = [Server.Daemon, Server.Baseline, Server.WatchingBaseline, Server.LockingBaseline];

    /// <summary>Where server and clients run.</summary>
    private enum Pinning
    {
        None,
        /// <summary>Server and clients on CPU 0 (taskset -c 0), the other CPUs idle: the targets' pinned case.</summary>
        Cpu0,
        /// <summary>
        /// As <see cref="Cpu0"/>, with CPU 1 kept busy by a spinning shell at nice 19. No
        /// target: it shows how much of a pinned figure depends on CPU 1 being idle, which
        /// on the build VM makes the servers that watch releases slower (the README's
        /// broker benchmark: the watch's teardown wakes a kernel worker there).
        /// </summary>
        Cpu0OtherBusy,
    }

    private static string Name(Pinning pinning) => pinning switch
    {
        Pinning.None => "none",
        Pinning.Cpu0 => "cpu 0",
        _ => "cpu 0, 1 busy",
    };

    private static string Label(Server server, string? daemonPath) => server switch
    {
        Server.Daemon => daemonPath is null ? "rstmemd (model, JIT)" : "rstmemd (model)",
        Server.Baseline => "C epoll baseline",
        Server.WatchingBaseline => "C + release watch",
        _ => "C + release lock",
    };

    private const string Usage = "usage: rstmem-benchmarks broker [--clients N] [--size S] [--seconds T] [--repeat R] [--daemon PATH]";

    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        int clients = 16;
        long bytes = 1 << 20;
        double seconds = 3;
        int repeat = 3;
        string? daemon = null;
        for (int i = 0; i < args.Length; i++)
        {
            string option = args[i];
            if (i + 1 >= args.Length)
            {
                return UsageError(stderr, $"{option}: expected a value after it");
            }
            string value = args[++i];
            switch (option)
            {
                case "--clients" when int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out int n) && n is >= 1 and <= 256:
                    clients = n;
                    break;
                case "--clients":
                    return UsageError(stderr, $"--clients: '{value}' is out of range; expected 1 to 256");
                case "--size" when ByteSize.TryParse(value, out long parsed) && parsed > 0:
                    bytes = parsed;
                    break;
                case "--size":
                    return UsageError(stderr, $"--size: '{value}' is not a size; expected {ByteSize.Expected}");
                case "--seconds" when double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out double t) && t is > 0 and <= 600:
                    seconds = t;
                    break;
                case "--seconds":
                    return UsageError(stderr, $"--seconds: '{value}' is out of range; expected more than 0 and at most 600");
                case "--repeat" when int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out int r) && r is >= 1 and <= 20:
                    repeat = r;
                    break;
                case "--repeat":
                    return UsageError(stderr, $"--repeat: '{value}' is out of range; expected 1 to 20");
                case "--daemon" when File.Exists(value):
                    daemon = Path.GetFullPath(value);
                    break;
                case "--daemon":
                    return UsageError(stderr, $"--daemon: '{value}' does not exist; expected the path of an rstmemd executable");
                default:
                    return UsageError(stderr, $"unknown option '{option}'");
            }
        }
        try
        {
            return Measure(clients, bytes, seconds, repeat, daemon, stdout);
        }
        catch (Exception e) when (e is InvalidOperationException or RstmemException or IOException or System.ComponentModel.Win32Exception)
        {
            stderr.WriteLine($"rstmem-benchmarks broker: {e.Message}");
            return 1;
        }
    }

    private static int UsageError(TextWriter stderr, string message)
    {
        stderr.WriteLine($"rstmem-benchmarks broker: {message}");
        stderr.WriteLine(Usage);
        return 2;
    }

    private static int Measure(int clients, long size, double seconds, int repeat, string? daemonPath, TextWriter stdout)
    {
        string native = FindNativeDirectory();
        string directory = Directory.CreateTempSubdirectory("rstmemd-bench-").FullName;
        try
        {
            stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"rstmemd bench: {ByteSize.Format(size)} buffers, {seconds:0.#} s per run, {Environment.ProcessorCount} CPUs; round trip = request sent to descriptor in hand"));
            stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"each row: the median of {repeat} runs, the servers taking turns; p50 range = the runs' lowest and highest p50"));
            stdout.WriteLine("load generator: src/Native/bench/rstmem-bench-client.c against every server; pinned = server and clients on CPU 0 (taskset -c 0)");
            stdout.WriteLine("cpu 0, 1 busy = pinned, with CPU 1 kept busy by a spinning shell at nice 19 (no target: what an idle CPU 1 costs the pinned rows)");
            stdout.WriteLine("C + release lock = the C baseline with --lock-releases: an open file description lock per buffer, swept every 5 ms, as the model tracks a buffer in its first 50 ms (src/Model/Files/LockedFiles.cs)");
            stdout.WriteLine("C + release watch = the C baseline with --watch-releases: an inotify watch per buffer, as rstmemd keeps on Linux 6.1 and the model for a buffer held longer");
            stdout.WriteLine(daemonPath is null
                ? "rstmemd = rstmemd.dll under the JIT (--daemon PATH measures a published executable)"
                : $"rstmemd = {daemonPath}");
            stdout.WriteLine();
            stdout.WriteLine("IPIs/trip = cross-CPU interrupts on the machine (/proc/interrupts: rescheduling and function call) during the run, per round trip");
            stdout.WriteLine();
            stdout.WriteLine($"{"clients",7}  {"pinning",-13}  {"server",-22}  {"p50 us",8}  {"p99 us",8}  {"allocs/s",10}  {"IPIs/trip",9}  {"p50 range us",14}");
            var rows = new List<(int Clients, Pinning Pinning, Result Ours, Result Baseline, Result Watching, Result Locking)>();
            Pinning[] pinnings = Environment.ProcessorCount > 1 ? [Pinning.None, Pinning.Cpu0, Pinning.Cpu0OtherBusy] : [Pinning.None, Pinning.Cpu0];
            foreach (int n in clients == 1 ? new[] { 1 } : [1, clients])
            {
                foreach (Pinning pinning in pinnings)
                {
                    bool pinned = pinning != Pinning.None;
                    using Process? spinner = pinning == Pinning.Cpu0OtherBusy ? StartSpinner(cpu: 1) : null;
                    var runs = Servers.ToDictionary(server => server, _ => new List<Result>());
                    try
                    {
                        for (int run = 0; run < repeat; run++)
                        {
                            foreach (Server server in Servers)
                            {
                                runs[server].Add(Measure(native, directory, pinned, n, size, seconds, server, daemonPath));
                            }
                        }
                    }
                    finally
                    {
                        if (spinner is not null)
                        {
                            spinner.Kill();
                            spinner.WaitForExit();
                        }
                    }
                    foreach (Server server in Servers)
                    {
                        Print(stdout, n, pinning, Label(server, daemonPath), Median(runs[server]), runs[server]);
                    }
                    rows.Add((n, pinning, Median(runs[Server.Daemon]), Median(runs[Server.Baseline]), Median(runs[Server.WatchingBaseline]), Median(runs[Server.LockingBaseline])));
                }
            }
            stdout.WriteLine();
            stdout.WriteLine("against the C baseline (the targets), and what the release lock alone costs it (C + release lock against C), and a watch instead (C + release watch against C):");
            stdout.WriteLine($"{"clients",7}  {"pinning",-13}  {"p50 ratio",9}  {"p99 ratio",9}  {"throughput ratio",16}  {"lock alone: p50, p99, throughput",33}  {"watch instead",20}  targets");
            foreach (var (n, pinning, ours, baseline, watching, locking) in rows)
            {
                double p50 = ours.P50 / baseline.P50;
                double p99 = ours.P99 / baseline.P99;
                double throughput = ours.Throughput / baseline.Throughput;
                string verdict = pinning == Pinning.Cpu0OtherBusy ? "no target (CPU 1 busy)"
                    : n == 1
                    ? Judge("p50 <= 1.5x", p50, locking.P50 / baseline.P50, r => r <= 1.5, ours, baseline, locking) + "; " +
                      Judge("p99 <= 3x", p99, locking.P99 / baseline.P99, r => r <= 3, ours, baseline, locking)
                    : Judge("throughput >= 0.6x", throughput, locking.Throughput / baseline.Throughput, r => r >= 0.6, ours, baseline, locking);
                string watch = string.Create(CultureInfo.InvariantCulture,
                    $"{watching.P50 / baseline.P50:F2}x, {watching.P99 / baseline.P99:F2}x, {watching.Throughput / baseline.Throughput:F2}x");
                string lockInstead = string.Create(CultureInfo.InvariantCulture,
                    $"{locking.P50 / baseline.P50:F2}x, {locking.P99 / baseline.P99:F2}x, {locking.Throughput / baseline.Throughput:F2}x");
                stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{n,7}  {Name(pinning),-13}  {p50,8:F2}x  {p99,8:F2}x  {throughput,15:F2}x  {lockInstead,33}  {watch,20}  {verdict}"));
            }
            stdout.WriteLine();
            stdout.WriteLine("against the C baseline with the release lock (the same per-buffer kernel work as rstmemd on the model for a buffer closed within 50 ms):");
            stdout.WriteLine($"{"clients",7}  {"pinning",-13}  {"p50 ratio",9}  {"p99 ratio",9}  {"throughput ratio",16}");
            foreach (var (n, pinning, ours, _, _, locking) in rows)
            {
                stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{n,7}  {Name(pinning),-13}  {ours.P50 / locking.P50,8:F2}x  {ours.P99 / locking.P99,8:F2}x  {ours.Throughput / locking.Throughput,15:F2}x"));
            }
            stdout.WriteLine();
            bool loadErrors = BrokerLoadBenchmark.Run(native, directory, size, seconds, repeat, rows.First(r => r.Clients == 1 && r.Pinning == Pinning.Cpu0).Baseline.P50, stdout);
            return loadErrors || rows.Any(r => r.Ours.Errors > 0 || r.Baseline.Errors > 0 || r.Watching.Errors > 0 || r.Locking.Errors > 0) ? 1 : 0;
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    /// <summary>
    /// A target's verdict, and for a miss its cause as this run measured it:
    /// the release tracking when the C baseline with the same per-buffer
    /// kernel work as the model's (the release lock) alone misses the same
    /// target, with each server's cross-CPU interrupts a round trip; else
    /// rstmemd's own.
    /// </summary>
    private static string Judge(string target, double ratio, double lockRatio, Func<double, bool> meets, Result ours, Result baseline, Result locking)
    {
        if (meets(ratio))
        {
            return $"{target}: met";
        }
        return meets(lockRatio)
            ? string.Create(CultureInfo.InvariantCulture, $"{target}: NOT met (rstmemd's own: C + release lock meets it, {lockRatio:F2}x)")
            : string.Create(CultureInfo.InvariantCulture,
                $"{target}: NOT met (the release tracking: C + release lock alone {lockRatio:F2}x; IPIs/trip {ours.InterruptsPerRoundTrip:F2} rstmemd, {locking.InterruptsPerRoundTrip:F2} C + lock, {baseline.InterruptsPerRoundTrip:F2} C)");
    }

    private static void Print(TextWriter stdout, int clients, Pinning pinning, string server, Result r, List<Result> runs) =>
        stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{clients,7}  {Name(pinning),-13}  {server,-22}  {r.P50,8:F1}  {r.P99,8:F1}  {r.Throughput,10:F0}  {r.InterruptsPerRoundTrip,9:F2}  {$"{runs.Min(x => x.P50):F1}-{runs.Max(x => x.P50):F1}",14}"));

    /// <summary>Each figure's median over the runs (taken figure by figure); errors and round trips summed.</summary>
    internal static Result Median(List<Result> runs)
    {
        static double Of(IEnumerable<double> values)
        {
            double[] sorted = values.Order().ToArray();
            return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
        }
        return new Result(Of(runs.Select(r => r.P50)), Of(runs.Select(r => r.P99)), Of(runs.Select(r => r.Throughput)),
            runs.Sum(r => r.RoundTrips), runs.Sum(r => r.Errors), Of(runs.Select(r => r.InterruptsPerRoundTrip)));
    }

    private static Result Measure(string native, string directory, bool pinned, int clients, long size, double seconds, Server which, string? daemonPath)
    {
        bool daemon = which == Server.Daemon;
        string socket = Path.Combine(directory, daemon ? "rstmemd.sock" : "baseline.sock");
        using Process server = daemon ? StartDaemon(directory, socket, pinned, daemonPath) : StartBaseline(native, socket, pinned, which);
        try
        {
            WaitUntilServing(socket, server, daemon);
            Result result = RunGenerator(native, socket, pinned, clients, size, seconds, "secure-video", daemon ? "rstmemd" : "the baseline");
            if (which is Server.WatchingBaseline or Server.LockingBaseline)
            {
                CheckEveryReleaseSeen(server, result);
            }
            return result;
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

    /// <summary>
    /// Stops the C server with --watch-releases or --lock-releases the orderly
    /// way (SIGTERM) and reads its "released N of M": every buffer it watched
    /// must have been seen released (the generator has exited, so nothing is
    /// held), or its row would time a watch that reports nothing.
    /// </summary>
    private static void CheckEveryReleaseSeen(Process server, Result result)
    {
        Sys.TryKill(server.Id, Signals.SIGTERM).ThrowIfError("kill(SIGTERM)", "the baseline server");
        if (!server.WaitForExit(TimeSpan.FromSeconds(30)))
        {
            throw new InvalidOperationException("the baseline server tracking releases did not exit within 30 s of SIGTERM");
        }
        string output = server.StandardOutput.ReadToEnd();
        Match counts = Regex.Match(output, @"released (\d+) of (\d+)");
        if (!counts.Success)
        {
            throw new InvalidOperationException($"the baseline server tracking releases printed no release count: '{output.Trim()}'");
        }
        long released = long.Parse(counts.Groups[1].Value, CultureInfo.InvariantCulture);
        long watched = long.Parse(counts.Groups[2].Value, CultureInfo.InvariantCulture);
        if (released != watched || watched < result.RoundTrips)
        {
            throw new InvalidOperationException(
                $"the baseline server tracking releases saw {released} releases of the {watched} buffers it watched ({result.RoundTrips} round trips): expected all of them");
        }
    }

    /// <summary>The C load generator against <paramref name="socket"/>: its p50, p99 and throughput, and the cross-CPU interrupts while it ran.</summary>
    internal static Result RunGenerator(string native, string socket, bool pinned, int clients, long size, double seconds, string target, string against)
    {
        ProcessStartInfo load = Command(pinned, Path.Combine(native, "rstmem-bench-client"),
            ["--socket", socket, "--clients", clients.ToString(CultureInfo.InvariantCulture), "--size", size.ToString(CultureInfo.InvariantCulture),
             "--seconds", seconds.ToString(CultureInfo.InvariantCulture), "--target", target]);
        load.RedirectStandardOutput = true;
        load.RedirectStandardError = true;
        long? interruptsBefore = CrossCpuInterrupts.Read();
        using Process generator = Process.Start(load)!;
        Task<string> stderr = generator.StandardError.ReadToEndAsync();
        string output = generator.StandardOutput.ReadToEnd();
        generator.WaitForExit();
        long? interruptsAfter = CrossCpuInterrupts.Read();
        if (generator.ExitCode != 0)
        {
            throw new InvalidOperationException($"the load generator failed against {against}: {stderr.GetAwaiter().GetResult().Trim()}");
        }
        using JsonDocument json = JsonDocument.Parse(output);
        JsonElement root = json.RootElement;
        long roundTrips = root.GetProperty("round_trips").GetInt64();
        double interrupts = interruptsBefore is long before && interruptsAfter is long after && roundTrips > 0
            ? (double)(after - before) / roundTrips
            : double.NaN;
        return new Result(root.GetProperty("p50_us").GetDouble(), root.GetProperty("p99_us").GetDouble(),
            root.GetProperty("throughput_per_s").GetDouble(), roundTrips, root.GetProperty("errors").GetInt64(), interrupts);
    }

    private static Process StartDaemon(string directory, string socket, bool pinned, string? daemonPath)
    {
        // A pool large enough that the run measures the broker, not exhaustion (memfds cost nothing until touched).
        string config = Path.Combine(directory, "bench.json");
        File.WriteAllText(config, """{"Backend": "model", "LogLevel": "Warning", "Model": {"UseCases": {"secure-video": {"Kind": "static", "Size": "64GiB"}}}, "Limits": {"MaxBuffersPerUser": 100000, "MaxBytesPerUser": "1024GiB", "MaxConnectionsPerUser": 1024}}""");
        // rstmemd.dll is copied beside this benchmark by the project reference.
        string program = daemonPath ?? "dotnet";
        string[] arguments = daemonPath is not null
            ? ["serve", "--config", config, "--socket", socket]
            : [Path.Combine(AppContext.BaseDirectory, "rstmemd.dll"), "serve", "--config", config, "--socket", socket];
        ProcessStartInfo info = Command(pinned, program, arguments);
        info.RedirectStandardError = true;
        info.RedirectStandardOutput = true;
        return Process.Start(info)!;
    }

    private static Process StartBaseline(string native, string socket, bool pinned, Server which)
    {
        string[] arguments = which switch
        {
            Server.WatchingBaseline => ["--watch-releases", socket],
            Server.LockingBaseline => ["--lock-releases", socket],
            _ => [socket],
        };
        ProcessStartInfo info = Command(pinned, Path.Combine(native, "rstmem-bench-server"), arguments);
        info.RedirectStandardOutput = true;
        info.RedirectStandardError = true;
        return Process.Start(info)!;
    }

    /// <summary>A shell spinning on <paramref name="cpu"/> at nice 19 (taskset, nice): keeps that CPU from idling; the caller kills it.</summary>
    internal static Process StartSpinner(int cpu)
    {
        var info = new ProcessStartInfo("taskset") { UseShellExecute = false };
        foreach (string argument in (string[])["-c", cpu.ToString(CultureInfo.InvariantCulture), "nice", "-n", "19", "sh", "-c", "while :; do :; done"])
        {
            info.ArgumentList.Add(argument);
        }
        return Process.Start(info) ?? throw new InvalidOperationException("taskset did not start");
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
