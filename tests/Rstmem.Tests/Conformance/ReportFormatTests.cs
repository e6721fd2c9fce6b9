using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using System.Xml;
using System.Xml.Linq;
using Rstmem.Conformance;
using Rstmem.Model;
using Rstmem.Tests.Support;

namespace Rstmem.Tests.Conformance;

/// <summary>
/// The machine-readable reports, read as a CI system reads them: JUnit XML
/// from its bytes by a strict parser (the declared encoding must be the real
/// one), TAP 13 line by line; every count against the run's own results.
/// </summary>
public sealed class ReportFormatTests
{
    /// <summary>One run with failures, skips and passes in every suite: the model with planted bugs, pools too big for the budget.</summary>
    private static (ConformanceEnvironment Environment, IReadOnlyList<CaseResult> Results) RunWithFailures()
    {
        var kernel = new BuggyKernel(new ModelKernel(new ModelOptions { Generation = "mainline" }));
        ConformanceEnvironment environment = ConformanceEnvironment.Discover(kernel, [], null);
        IReadOnlyList<CaseResult> results = new ConformanceRunner(environment, new Budget(16 << 20)).Run(ConformanceCatalog.All, null, CancellationToken.None);
        Assert.Contains(results, r => r.Outcome == Outcome.Fail);
        Assert.Contains(results, r => r.Outcome == Outcome.Skip);
        return (environment, results);
    }

    /// <summary>XML from raw bytes: no DTD, no resolver; the reader takes the encoding from the BOM or the declaration, so a declaration that lies fails here.</summary>
    private static XDocument ParseStrict(byte[] bytes)
    {
        var settings = new XmlReaderSettings { DtdProcessing = DtdProcessing.Prohibit, XmlResolver = null, CheckCharacters = true };
        using var reader = XmlReader.Create(new MemoryStream(bytes, writable: false), settings);
        return XDocument.Load(reader);
    }

    private static int Count(XElement element, string attribute) =>
        int.Parse((string?)element.Attribute(attribute) ?? throw new InvalidDataException($"<{element.Name}> has no {attribute} attribute"), CultureInfo.InvariantCulture);

    private static void AssertJUnitMatches(byte[] bytes, IReadOnlyList<CaseResult> results)
    {
        Assert.False(bytes.AsSpan().StartsWith(new byte[] { 0xEF, 0xBB, 0xBF }), "a UTF-8 byte order mark");
        XDocument document = ParseStrict(bytes);
        Assert.Equal("utf-8", document.Declaration?.Encoding, StringComparer.OrdinalIgnoreCase);
        XElement root = document.Root!;
        Assert.Equal("testsuites", root.Name.LocalName);
        Assert.Equal(results.Count, Count(root, "tests"));
        Assert.Equal(results.Count(r => r.Outcome == Outcome.Fail), Count(root, "failures"));
        Assert.Equal(results.Count(r => r.Outcome == Outcome.Skip), Count(root, "skipped"));

        List<XElement> suites = root.Elements("testsuite").ToList();
        Assert.Equal(results.Select(r => r.Case.Suite).Distinct(), suites.Select(s => (string?)s.Attribute("name")));
        foreach (XElement suite in suites)
        {
            string name = (string)suite.Attribute("name")!;
            List<CaseResult> mine = results.Where(r => r.Case.Suite == name).ToList();
            List<XElement> cases = suite.Elements("testcase").ToList();
            Assert.Equal(mine.Count, Count(suite, "tests"));
            Assert.Equal(mine.Count, cases.Count);
            Assert.Equal(mine.Count(r => r.Outcome == Outcome.Fail), Count(suite, "failures"));
            Assert.Equal(mine.Count(r => r.Outcome == Outcome.Fail), cases.Count(c => c.Element("failure") is not null));
            Assert.Equal(mine.Count(r => r.Outcome == Outcome.Skip), Count(suite, "skipped"));
            Assert.Equal(mine.Count(r => r.Outcome == Outcome.Skip), cases.Count(c => c.Element("skipped") is not null));
            Assert.Equal(mine.Select(r => $"{r.Case.Id} @ {r.Target}"), cases.Select(c => (string?)c.Attribute("name")));
        }
    }

    [Fact]
    public void Junit_is_utf8_as_declared_and_counts_every_result()
    {
        (ConformanceEnvironment environment, IReadOnlyList<CaseResult> results) = RunWithFailures();
        using (environment)
        {
            byte[] bytes = ConformanceReport.JUnit(environment, results);

            AssertJUnitMatches(bytes, results);
            // Non-ASCII text (the kernel conditions' arrows) survives the round trip.
            XElement failure = ParseStrict(bytes).Descendants("failure").First(f => f.Parent!.Attribute("name")!.Value.StartsWith("dma-heap.alloc.len-zero @ ", StringComparison.Ordinal));
            Assert.Contains("PAGE_ALIGN(0) == 0 → -EINVAL", failure.Value, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Junit_escapes_markup_and_replaces_what_xml_cannot_carry_in_detail_text()
    {
        (ConformanceEnvironment environment, IReadOnlyList<CaseResult> results) = RunWithFailures();
        using (environment)
        {
            const string Hostile = "a<b>&\"c\" 'd'\nline two\ttab\r\u0001\u001b[31m \uD800 \U0001F600 \uFFFE end";
            const string Carried = "a<b>&\"c\" 'd'\nline two\ttab\r\uFFFD\uFFFD[31m \uFFFD \U0001F600 \uFFFD end";
            CaseResult failed = results.First(r => r.Outcome == Outcome.Fail) with { Detail = Hostile };
            CaseResult skipped = results.First(r => r.Outcome == Outcome.Skip) with { Detail = Hostile };
            byte[] bytes = ConformanceReport.JUnit(environment, [failed, skipped]);

            AssertJUnitMatches(bytes, [failed, skipped]);
            XDocument document = ParseStrict(bytes);
            XElement failure = document.Descendants("failure").Single();
            Assert.Equal(Carried, (string)failure.Attribute("message")!);
            Assert.EndsWith("\n" + Carried, failure.Value, StringComparison.Ordinal);
            Assert.Equal(Carried, (string)document.Descendants("skipped").Single().Attribute("message")!);
        }
    }

    [Fact]
    public void Filters_are_shell_globs_matched_against_the_whole_case_id()
    {
        Assert.Equal(["pools.release-at-last-close-in-child"], ConformanceCatalog.Select(["*.release-at-last-close-in-?hild"]).Select(c => c.Id));
        Assert.Empty(ConformanceCatalog.Select(["release-at-last-close"])); // not a substring search
        Assert.Empty(ConformanceCatalog.Select(["POOLS.*"])); // case matters
        Assert.Equal(ConformanceCatalog.All.Count(c => c.Id.StartsWith("tee.", StringComparison.Ordinal)), ConformanceCatalog.Select(["tee.*", "tee.*"]).Count);
    }

    [Fact]
    public async Task Junit_written_by_the_command_to_a_file_and_to_stdout_parses_from_its_bytes()
    {
        string path = Path.Combine(Path.GetTempPath(), $"rstmemd-junit-{Environment.ProcessId}-{Guid.NewGuid():N}.xml");
        try
        {
            var (exit, stdout, _) = CliRun.Run("conformance", "--model", "--generation", "v4", "--format", "junit", "--filter", "tee.*", "--output", path);
            Assert.Equal(0, exit);
            Assert.Contains(" passed, 0 failed, ", stdout, StringComparison.Ordinal);
            XElement root = ParseStrict(File.ReadAllBytes(path)).Root!;
            Assert.Equal(Count(root, "tests"), root.Descendants("testcase").Count());
        }
        finally
        {
            File.Delete(path);
        }

        // A separate process: the bytes on its standard output, as a pipe to CI carries them.
        var start = new ProcessStartInfo(ProcessRunner.DotnetHost) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string argument in new[] { RepoPaths.RstmemdDll, "conformance", "--model", "--generation", "mainline", "--format", "junit", "--filter", "dma-heap.alloc.*" })
        {
            start.ArgumentList.Add(argument);
        }
        CancellationToken cancellation = TestContext.Current.CancellationToken;
        using Process process = Process.Start(start)!;
        Task<string> stderr = process.StandardError.ReadToEndAsync(cancellation);
        using var bytes = new MemoryStream();
        await process.StandardOutput.BaseStream.CopyToAsync(bytes, cancellation);
        await process.WaitForExitAsync(cancellation);
        Assert.True(process.ExitCode == 0, await stderr);
        XElement piped = ParseStrict(bytes.ToArray()).Root!;
        Assert.Equal(ConformanceCatalog.Select(["dma-heap.alloc.*"]).Count * 5, Count(piped, "tests")); // every case on the five heaps
    }

    private static readonly Regex TestPoint = new(@"^(ok|not ok) (\d+) (.*)$", RegexOptions.CultureInvariant);

    /// <summary>
    /// TAP version 13, strictly: the version line, the plan, then test points
    /// numbered 1..N, "#" diagnostics, and YAML blocks ("  ---" .. "  ...")
    /// only after a "not ok"; '#' in a description escaped; a SKIP directive
    /// exactly on the skips. Every point agrees with its result.
    /// </summary>
    private static void AssertTapMatches(string tap, IReadOnlyList<CaseResult> results)
    {
        string[] lines = tap.Split('\n');
        Assert.Equal("", lines[^1]); // ends with a newline
        Assert.Equal("TAP version 13", lines[0]);
        Assert.Equal($"1..{results.Count}", lines[1]);
        int point = 0;
        for (int i = 2; i < lines.Length - 1; i++)
        {
            string line = lines[i];
            if (line.StartsWith("# ", StringComparison.Ordinal))
            {
                continue;
            }
            Match match = TestPoint.Match(line);
            Assert.True(match.Success, $"line {i + 1} is neither a test point nor a diagnostic: {line}");
            Assert.Equal(++point, int.Parse(match.Groups[2].Value, CultureInfo.InvariantCulture));
            CaseResult result = results[point - 1];
            string rest = match.Groups[3].Value;
            int directive = Regex.Match(rest, @"(?<!\\)#").Index;
            bool hasDirective = Regex.IsMatch(rest, @"(?<!\\)#");
            string description = hasDirective ? rest[..directive] : rest;
            Assert.StartsWith($"{result.Case.Id} @ {result.Target} - ", description, StringComparison.Ordinal);
            Assert.Equal(result.Outcome == Outcome.Fail ? "not ok" : "ok", match.Groups[1].Value);
            Assert.Equal(result.Outcome == Outcome.Skip, hasDirective);
            if (hasDirective)
            {
                Assert.StartsWith("# SKIP ", rest[directive..], StringComparison.Ordinal);
            }
            if (result.Outcome == Outcome.Fail)
            {
                Assert.Equal("  ---", lines[++i]);
                while (lines[++i] != "  ...")
                {
                    Assert.Matches(@"^  [a-z]+: '([^']|'')*'$", lines[i]);
                }
            }
        }
        Assert.Equal(results.Count, point);
    }

    [Fact]
    public void Tap_is_valid_version_13_and_agrees_with_every_result()
    {
        (ConformanceEnvironment environment, IReadOnlyList<CaseResult> results) = RunWithFailures();
        using (environment)
        {
            AssertTapMatches(ConformanceReport.Tap(environment, results), results);
        }
    }
}
