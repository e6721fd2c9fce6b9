using System.CommandLine;
using System.Runtime.InteropServices;
using Rstmem.Interop;
using Rstmem.Conformance;
using Rstmem.Interop.Kernel;
using Rstmem.Model;

namespace Rstmem.Daemon.Cli;

/// <summary>
/// <c>rstmemd conformance</c>: the ioctl conformance suite against this
/// machine's devices or the reference model. Exit 0 when nothing failed,
/// 1 on a failure (or nothing to test), 2 on a bad command line, 130 when interrupted.
/// </summary>
internal static class ConformanceCommand
{
    public const int ExitInterrupted = 130;
    private const long DefaultMaxBytes = 64L << 20;
    private static readonly string[] Formats = ["text", "tap", "junit"];

    /// <param name="host">The kernel tested without --model: this machine's (<see cref="LinuxKernel.Instance"/>) unless a test gives another.</param>
    public static Command Create(TextWriter stdout, TextWriter stderr, Func<IKernel>? host = null)
    {
        var tee = new Option<string?>("--tee") { Description = "the TEE device to test (/dev/teeN)" };
        var heap = new Option<string[]>("--heap") { Description = "a heap to test (repeatable): system, reserved, protected,secure-video, ..." };
        var model = new Option<bool>("--model") { Description = "test the in-process reference kernel model instead of this machine's devices" };
        var generation = new Option<string?>("--generation") { Description = "with --model: v4, v6 or mainline (default mainline)" };
        var format = new Option<string>("--format") { Description = "text, tap (TAP 13) or junit (JUnit XML)", DefaultValueFactory = _ => "text" };
        var output = new Option<string?>("--output") { Description = "write the report to this file (the summary table still goes to stdout)" };
        var list = new Option<bool>("--list") { Description = "list the cases (after --filter) and exit" };
        var filter = new Option<string[]>("--filter") { Description = "run only cases whose id matches this glob (repeatable), e.g. 'dma-buf.*'" };
        var maxBytes = new Option<string>("--max-bytes") { Description = "never hold more than this at once (default 64MiB); cases that need more are skipped", DefaultValueFactory = _ => "64MiB" };
        var command = new Command("conformance", "run the ioctl conformance suite against this machine's TEE and DMA-heap devices, or the reference model")
        {
            tee, heap, model, generation, format, output, list, filter, maxBytes,
        };
        command.SetAction(result =>
        {
            string[] globs = result.GetValue(filter) ?? [];
            IReadOnlyList<ConformanceCase> cases = ConformanceCatalog.Select(globs);
            foreach (string glob in globs.Where(g => ConformanceCatalog.Select([g]).Count == 0))
            {
                return RstmemdCli.UsageError(stderr, $"conformance: --filter '{glob}' matches no case id; see --list");
            }
            if (result.GetValue(list))
            {
                foreach (ConformanceCase c in cases)
                {
                    stdout.WriteLine($"{c.Id,-48} {c.Title}");
                    stdout.WriteLine($"{"",-48} checks: {c.Mirrors}");
                }
                stdout.WriteLine($"{cases.Count} cases");
                return RstmemdCli.ExitOk;
            }

            string formatName = result.GetValue(format)!;
            if (!Formats.Contains(formatName))
            {
                return RstmemdCli.UsageError(stderr, $"conformance: --format '{formatName}': expected {string.Join(", ", Formats)}");
            }
            string limitText = result.GetValue(maxBytes)!;
            if (!ByteSize.TryParse(limitText, out long limit) || limit < 4096)
            {
                return RstmemdCli.UsageError(stderr, $"conformance: --max-bytes '{limitText}': expected {ByteSize.Expected}, at least 4096");
            }
            string? generationName = result.GetValue(generation);
            KernelGeneration? declared = null;
            if (generationName is not null)
            {
                if (!result.GetValue(model))
                {
                    return RstmemdCli.UsageError(stderr, "conformance: --generation chooses the model's generation; add --model (a real kernel's generation is detected)");
                }
                if (!KernelGenerations.TryParse(generationName, out KernelGeneration parsed))
                {
                    return RstmemdCli.UsageError(stderr, $"conformance: --generation '{generationName}': expected v4, v6 or mainline");
                }
                declared = parsed;
            }

            IKernel kernel = result.GetValue(model)
                ? new ModelKernel(new ModelOptions { Generation = (declared ?? KernelGeneration.Mainline).Name() })
                : host?.Invoke() ?? LinuxKernel.Instance;
            if (result.GetValue(model))
            {
                declared ??= KernelGeneration.Mainline;
            }
            ConformanceEnvironment environment;
            try
            {
                environment = ConformanceEnvironment.Discover(kernel, result.GetValue(heap) ?? [], result.GetValue(tee), declared);
            }
            catch (ArgumentException missing)
            {
                (kernel as IDisposable)?.Dispose();
                stderr.WriteLine($"rstmemd: conformance: {missing.Message}");
                return RstmemdCli.ExitFailure;
            }
            using (environment)
            {
                return Run(environment, cases, formatName, result.GetValue(output), new Budget(limit), stdout, stderr);
            }
        });
        return command;
    }

    private static int Run(ConformanceEnvironment environment, IReadOnlyList<ConformanceCase> cases, string format, string? outputPath, Budget budget, TextWriter stdout, TextWriter stderr)
    {
        foreach (string line in environment.Found)
        {
            stderr.WriteLine($"conformance: {line}");
        }
        if (environment.Targets.Count == 0)
        {
            stderr.WriteLine("rstmemd: conformance: nothing to test: no DMA heap and no TEE device here (run as root on the board, or use --model for the reference model)");
            return RstmemdCli.ExitFailure;
        }

        using var cancellation = new CancellationTokenSource();
        void Interrupt(PosixSignalContext signal)
        {
            signal.Cancel = true; // finish the current step, free everything, report
            cancellation.Cancel();
        }
        using PosixSignalRegistration sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, Interrupt);
        using PosixSignalRegistration sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Interrupt);

        bool interactive = ReferenceEquals(stderr, Console.Error) && !Console.IsErrorRedirected;
        string suite = "";
        var runner = new ConformanceRunner(environment, budget);
        IReadOnlyList<CaseResult> results = runner.Run(cases, (index, total, id, target) =>
        {
            if (interactive)
            {
                string line = $"[{index}/{total}] {id} @ {target}";
                stderr.Write($"\r{line,-100}");
            }
            else if (!id.StartsWith(suite + ".", StringComparison.Ordinal))
            {
                suite = id[..id.IndexOf('.', StringComparison.Ordinal)];
                stderr.WriteLine($"conformance: [{index}/{total}] {suite} ...");
            }
        }, cancellation.Token);
        if (interactive)
        {
            stderr.Write($"\r{"",-100}\r");
        }

        // Every report is UTF-8 (the JUnit XML declares it); bytes are what reach the file or the console.
        byte[] report = format switch
        {
            "tap" => ConformanceReport.Encoding.GetBytes(ConformanceReport.Tap(environment, results)),
            "junit" => ConformanceReport.JUnit(environment, results),
            _ => ConformanceReport.Encoding.GetBytes(ConformanceReport.Text(environment, results)),
        };
        if (outputPath is not null)
        {
            try
            {
                File.WriteAllBytes(outputPath, report);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                stderr.WriteLine($"rstmemd: conformance: --output '{outputPath}': {e.Message}");
                return RstmemdCli.ExitFailure;
            }
            if (format == "text")
            {
                WriteBytes(stdout, report);
            }
            else
            {
                stdout.Write(ConformanceReport.Table(results) + ConformanceReport.Totals(results) + "\n");
            }
        }
        else
        {
            WriteBytes(stdout, report);
            if (format != "text")
            {
                stderr.Write(ConformanceReport.Table(results));
                stderr.WriteLine(ConformanceReport.Totals(results));
            }
        }
        stderr.WriteLine($"conformance: held at most {ByteSize.Format(budget.Peak)} at once (--max-bytes {ByteSize.Format(budget.MaxBytes)}); {ByteSize.Format(budget.Held)} held now");
        if (cancellation.IsCancellationRequested)
        {
            stderr.WriteLine($"conformance: interrupted after {results.Count} of {runner.Plan(cases).Count} checks; everything allocated was freed");
            return ExitInterrupted;
        }
        return results.Any(r => r.Outcome == Outcome.Fail) ? RstmemdCli.ExitFailure : RstmemdCli.ExitOk;
    }

    /// <summary>
    /// The report's bytes, unchanged, on the process's standard output (whatever
    /// the console's encoding); another writer (a test's) gets them decoded.
    /// </summary>
    private static void WriteBytes(TextWriter stdout, byte[] report)
    {
        if (ReferenceEquals(stdout, Console.Out))
        {
            stdout.Flush();
            using Stream raw = Console.OpenStandardOutput();
            raw.Write(report);
            raw.Flush();
            return;
        }
        stdout.Write(ConformanceReport.Encoding.GetString(report));
    }
}
