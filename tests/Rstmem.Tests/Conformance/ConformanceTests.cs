using System.Text.RegularExpressions;
using Rstmem.Daemon.Cli;
using Rstmem.Conformance;
using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Model;
using Rstmem.Interop.Uapi;
using Rstmem.Tests.Support;

namespace Rstmem.Tests.Conformance;

/// <summary>
/// `rstmemd conformance`: the suite is the model's acceptance test, and the
/// suite itself is tested by a kernel with known bugs. These run with no other
/// test beside them: the pool cases hand a child a buffer through an
/// inheritable descriptor (src/Conformance/CaseContext.cs, ChildHolder), and a
/// process another test starts in that moment inherits it too and keeps the
/// pool a buffer short (seen as ENOMEM in release-at-last-close-in-child).
/// </summary>
[Collection(SerialTests.Name)]
public sealed class ConformanceTests
{
    private static (int Exit, string Stdout, string Stderr) Run(params string[] args) => CliRun.Run(args);

    [Theory]
    [InlineData("v4")]
    [InlineData("v6")]
    [InlineData("mainline")]
    public void The_model_passes_every_case_of_its_generation(string generation)
    {
        var (exit, tap, stderr) = Run("conformance", "--model", "--generation", generation, "--format", "tap");

        Assert.True(exit == 0, stderr + tap);
        Assert.StartsWith("TAP version 13\n", tap, StringComparison.Ordinal);
        Assert.DoesNotContain("\nnot ok ", tap, StringComparison.Ordinal);
        MatchCollection points = Regex.Matches(tap, @"^ok \d+ (\S+) @ (\S+) - ", RegexOptions.Multiline);
        int plan = int.Parse(Regex.Match(tap, @"^1\.\.(\d+)$", RegexOptions.Multiline).Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal(plan, points.Count);
        Assert.True(points.Select(m => m.Groups[1].Value).Distinct().Count() >= 60);
        // Every skip says why.
        Assert.All(Regex.Matches(tap, @"# SKIP(.*)$", RegexOptions.Multiline), m => Assert.True(m.Groups[1].Value.Trim().Length > 10, m.Value));
        Assert.Contains($"# generation: {generation}", tap, StringComparison.Ordinal);
    }

    [Fact]
    public void A_kernel_with_known_bugs_fails_exactly_the_cases_that_check_them()
    {
        var kernel = new BuggyKernel(new ModelKernel(new ModelOptions { Generation = "mainline" }));
        using ConformanceEnvironment environment = ConformanceEnvironment.Discover(kernel, [], null);
        IReadOnlyList<CaseResult> results = new ConformanceRunner(environment, new Budget(64 << 20)).Run(ConformanceCatalog.All, null, CancellationToken.None);

        var failed = results.Where(r => r.Outcome == Outcome.Fail).ToList();
        Assert.Equal(["dma-buf.lseek.cur", "dma-heap.alloc.len-zero"], failed.Select(r => r.Case.Id).Distinct().Order(StringComparer.Ordinal));
        Assert.Equal(5, failed.Count(r => r.Case.Id == "dma-buf.lseek.cur")); // every buffer target
        Assert.All(failed.Where(r => r.Case.Id == "dma-buf.lseek.cur"), r =>
            Assert.Equal("lseek(0, SEEK_CUR): expected EINVAL, observed success", r.Detail));
        Assert.All(failed.Where(r => r.Case.Id == "dma-heap.alloc.len-zero"), r =>
            Assert.StartsWith("the struct copied back on failure: expected ", r.Detail, StringComparison.Ordinal));

        string text = ConformanceReport.Text(environment, results);
        Assert.Contains("FAIL dma-heap.alloc.len-zero @ system: len 0: EINVAL", text, StringComparison.Ordinal);
        Assert.Contains("checks: drivers/dma-buf/dma-heap.c: dma_heap_buffer_alloc: PAGE_ALIGN(0) == 0 → -EINVAL", text, StringComparison.Ordinal);
    }

    [Fact]
    public void The_budget_is_never_exceeded_and_what_needs_more_is_skipped_with_the_reason()
    {
        using ConformanceEnvironment environment = ConformanceEnvironment.Discover(new ModelKernel(new ModelOptions()), [], null);
        var budget = new Budget(4 << 20);
        IReadOnlyList<CaseResult> results = new ConformanceRunner(environment, budget).Run(ConformanceCatalog.All, null, CancellationToken.None);

        Assert.DoesNotContain(results, r => r.Outcome == Outcome.Fail);
        Assert.InRange(budget.Peak, 1, 4 << 20);
        Assert.Equal(0, budget.Held);
        Assert.All(results.Where(r => r.Case.Suite == "pools"), r =>
        {
            Assert.Equal(Outcome.Skip, r.Outcome);
            Assert.Contains("--max-bytes 4MiB", r.Detail, StringComparison.Ordinal);
        });
        CaseResult sizes = results.First(r => r.Case.Id == "dma-heap.alloc.sizes");
        Assert.Equal(Outcome.Skip, sizes.Outcome);
        Assert.Contains("over --max-bytes 4MiB", sizes.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void An_interrupted_run_stops_and_frees_everything_it_allocated()
    {
        var model = new ModelKernel(new ModelOptions());
        using ConformanceEnvironment environment = ConformanceEnvironment.Discover(model, [], null);
        var budget = new Budget(64 << 20);
        using var cancellation = new CancellationTokenSource();
        int started = 0;
        IReadOnlyList<CaseResult> results = new ConformanceRunner(environment, budget).Run(
            ConformanceCatalog.Select(["pools.*"]),
            (_, _, _, _) =>
            {
                if (++started == 3)
                {
                    cancellation.Cancel(); // as SIGINT does, while a pool is being filled
                }
            },
            cancellation.Token);

        Assert.Equal(3, results.Count);
        Assert.Equal(Outcome.Skip, results[^1].Outcome);
        Assert.Equal("interrupted", results[^1].Detail);
        Assert.Equal(0, budget.Held);
        Assert.Equal(0, model.LiveBuffers);
    }

    [Fact]
    public void The_child_holder_exits_with_its_case()
    {
        using ConformanceEnvironment environment = ConformanceEnvironment.Discover(new ModelKernel(new ModelOptions()), ["protected,trusted-ui"], null);
        var before = ChildShells();
        IReadOnlyList<CaseResult> results = new ConformanceRunner(environment, new Budget(64 << 20))
            .Run(ConformanceCatalog.Select(["pools.release-at-last-close-in-child"]), null, CancellationToken.None);

        Assert.Equal(Outcome.Pass, Assert.Single(results).Outcome);
        Assert.Equal(before, ChildShells());
    }

    [Fact]
    public void List_prints_every_case_with_the_kernel_condition_it_checks()
    {
        var (exit, stdout, _) = Run("conformance", "--list");

        Assert.Equal(0, exit);
        Assert.EndsWith($"{ConformanceCatalog.All.Count} cases\n", stdout, StringComparison.Ordinal);
        Assert.True(ConformanceCatalog.All.Count >= 60);
        Assert.Equal(ConformanceCatalog.All.Count, ConformanceCatalog.All.Select(c => c.Id).Distinct().Count());
        Assert.All(ConformanceCatalog.All, c => Assert.Contains(c.Mirrors, stdout, StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("conformance: --generation chooses the model's generation; add --model", "conformance", "--generation", "v4")]
    [InlineData("conformance: --generation 'v5': expected v4, v6 or mainline", "conformance", "--model", "--generation", "v5")]
    [InlineData("conformance: --format 'xml': expected text, tap, junit", "conformance", "--model", "--format", "xml")]
    [InlineData("conformance: --max-bytes 'lots': expected a byte count", "conformance", "--model", "--max-bytes", "lots")]
    [InlineData("conformance: --max-bytes '1K': expected a byte count", "conformance", "--model", "--max-bytes", "1K")]
    [InlineData("conformance: --filter 'nosuch.*' matches no case id; see --list", "conformance", "--model", "--filter", "nosuch.*")]
    public void Bad_options_name_the_value_and_exit_2(string message, params string[] args)
    {
        var (exit, stdout, stderr) = Run(args);

        Assert.Equal(RstmemdCli.ExitUsage, exit);
        Assert.Equal("", stdout);
        Assert.StartsWith($"rstmemd: {message}", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void An_absent_heap_is_named_with_the_heaps_that_exist()
    {
        var (exit, _, stderr) = Run("conformance", "--model", "--heap", "linux,cma");

        Assert.Equal(RstmemdCli.ExitFailure, exit);
        Assert.Contains("--heap 'linux,cma': no such heap in /dev/dma_heap; expected one of: protected,secure-video,", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Named_targets_only_are_tested_and_a_missing_kind_is_one_skip_with_the_reason()
    {
        var (exit, stdout, _) = Run("conformance", "--model", "--heap", "system");

        Assert.Equal(0, exit);
        Assert.Contains("# targets: system\n", stdout, StringComparison.Ordinal);
        Assert.Contains("skip (no TEE device (/dev/tee*, or --tee) to run on):", stdout, StringComparison.Ordinal);
        Assert.DoesNotContain("protected,", stdout.Split("\ntargets:")[1], StringComparison.Ordinal);
    }

    [Fact]
    public void A_kernel_without_devices_says_there_is_nothing_to_test()
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        int exit = ConformanceCommand.Create(stdout, stderr, () => new NoDevicesKernel()).Parse([]).Invoke();

        Assert.Equal(RstmemdCli.ExitFailure, exit);
        Assert.Equal("", stdout.ToString());
        string errors = stderr.ToString();
        Assert.Contains($"conformance: kernel: {NoDevicesKernel.Name}\n", errors, StringComparison.Ordinal);
        Assert.Contains("conformance: /dev/dma_heap: no heaps\n", errors, StringComparison.Ordinal);
        Assert.Contains("conformance: /dev/tee*: no TEE device\n", errors, StringComparison.Ordinal);
        Assert.Contains("conformance: targets: (none)\n", errors, StringComparison.Ordinal);
        Assert.EndsWith("rstmemd: conformance: nothing to test: no DMA heap and no TEE device here (run as root on the board, or use --model for the reference model)\n", errors, StringComparison.Ordinal);
    }

    /// <summary>Live holder children: processes running "/bin/sh -c read -r _".</summary>
    private static int ChildShells() =>
        Directory.EnumerateDirectories("/proc").Count(d =>
        {
            try
            {
                return File.ReadAllText(Path.Combine(d, "cmdline")) == "/bin/sh\0-c\0read -r _\0";
            }
            catch (IOException)
            {
                return false;
            }
            catch (UnauthorizedAccessException)
            {
                return false;
            }
        });
}
