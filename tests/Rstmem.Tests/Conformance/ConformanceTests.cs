using System.Text.RegularExpressions;
using System.Xml.Linq;
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
/// suite itself is tested by a kernel with known bugs.
/// </summary>
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
    public void Junit_output_is_xml_with_consistent_counts()
    {
        var (exit, xml, _) = Run("conformance", "--model", "--generation", "v4", "--format", "junit", "--filter", "tee.*");

        Assert.Equal(0, exit);
        XElement root = XDocument.Parse(xml).Root!;
        Assert.Equal("testsuites", root.Name.LocalName);
        XElement suite = Assert.Single(root.Elements("testsuite"));
        Assert.Equal("tee", (string?)suite.Attribute("name"));
        int cases = suite.Elements("testcase").Count();
        Assert.Equal(cases, (int)suite.Attribute("tests")!);
        Assert.Equal(suite.Elements("testcase").Count(t => t.Element("skipped") is not null), (int)suite.Attribute("skipped")!);
        Assert.Equal(0, (int)suite.Attribute("failures")!);
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
    public void The_machine_without_devices_says_there_is_nothing_to_test()
    {
        if (Directory.Exists("/dev/dma_heap") || Directory.EnumerateFileSystemEntries("/dev", "tee*").Any())
        {
            return; // a machine with devices is tested by the real-kernel runs
        }
        var (exit, _, stderr) = Run("conformance");

        Assert.Equal(RstmemdCli.ExitFailure, exit);
        Assert.Contains("conformance: kernel: Linux ", stderr, StringComparison.Ordinal);
        Assert.Contains("nothing to test: no DMA heap and no TEE device here", stderr, StringComparison.Ordinal);
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

    /// <summary>The model with two planted bugs: lseek(SEEK_CUR) succeeds, and a failed len-0 allocation scribbles on the struct.</summary>
    private sealed class BuggyKernel(ModelKernel model) : IKernel, IDisposable
    {
        public string Description => "buggy " + model.Description;

        public ReleaseSignal ProbeReleaseSignal(SafeFd sample) => model.ProbeReleaseSignal(sample);

        public IReleaseObserver ObserveReleases(ReleaseSignal signal) => model.ObserveReleases(signal);

        public Errno Open(string path, int flags, out SafeFd fd) => model.Open(path, flags, out fd);

        public Errno Ioctl(SafeFd fd, uint request, Span<byte> argument, out int result)
        {
            Errno errno = model.Ioctl(fd, request, argument, out result);
            if (request == DmaHeap.DMA_HEAP_IOCTL_ALLOC && errno == Errno.EINVAL && argument.Length >= 24 && BitConverter.ToUInt64(argument) == 0)
            {
                argument[8] = 0xff;
            }
            return errno;
        }

        public Errno LSeek(SafeFd fd, long offset, int whence, out long position)
        {
            if (whence == Fcntl.SEEK_CUR)
            {
                position = 0;
                return Errno.None;
            }
            return model.LSeek(fd, offset, whence, out position);
        }

        public Errno Mmap(SafeFd fd, nuint length, int prot, int flags, long offset, out nint address) => model.Mmap(fd, length, prot, flags, offset, out address);

        public Errno Munmap(nint address, nuint length) => model.Munmap(address, length);

        public Errno ReadFdInfo(SafeFd fd, out string fdinfo) => model.ReadFdInfo(fd, out fdinfo);

        public IReadOnlyList<string> ListDirectory(string path) => model.ListDirectory(path);

        public void Dispose() => model.Dispose();
    }
}
