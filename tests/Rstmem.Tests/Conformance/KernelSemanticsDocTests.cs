using System.Reflection;
using System.Text.RegularExpressions;
using Rstmem.Conformance;
using Rstmem.Tests.Support;

namespace Rstmem.Tests.Conformance;

/// <summary>
/// docs/kernel-semantics.md and the conformance suite say the same thing:
/// every case id the document cites exists, every case is cited, every rule
/// (a list item under a "## " section) names what checks it — case ids, or
/// "model-only" with the unit test, or "not checked" with the reason — and
/// every unit test cited exists.
/// </summary>
public sealed class KernelSemanticsDocTests
{
    private static readonly string DocPath = Path.Combine(RepoPaths.Root, "docs", "kernel-semantics.md");

    /// <summary>A backticked token shaped like a case id of one of the suites ("dma-heap.alloc.basic").</summary>
    private static readonly Regex CaseCitation = new(
        $@"`((?:{string.Join('|', ConformanceCatalog.All.Select(c => Regex.Escape(c.Suite)).Distinct())})\.[a-z0-9][a-z0-9.-]*)`",
        RegexOptions.CultureInvariant);

    /// <summary>A backticked "SomethingTests.Method_name" (a unit test).</summary>
    private static readonly Regex TestCitation = new(@"`([A-Z][A-Za-z0-9]*Tests)\.([A-Za-z0-9_]+)`", RegexOptions.CultureInvariant);

    private static readonly Regex ItemStart = new(@"^\s*(?:-|\d+\.)\s", RegexOptions.CultureInvariant);

    private sealed record Item(int Line, string Text);

    private static string[] Lines() => File.ReadAllLines(DocPath);

    /// <summary>(line number, case id) for every citation in the document.</summary>
    private static List<(int Line, string Id)> CitedCases() =>
        Lines().SelectMany((text, i) => CaseCitation.Matches(text).Select(m => (i + 1, m.Groups[1].Value))).ToList();

    /// <summary>
    /// The rules: list items ("- " or "N. ", with their continuation lines)
    /// after the first "## " heading. Everything before it is the preamble.
    /// </summary>
    private static List<Item> Rules()
    {
        var items = new List<Item>();
        string[] lines = Lines();
        int first = Array.FindIndex(lines, l => l.StartsWith("## ", StringComparison.Ordinal));
        Assert.True(first >= 0, $"{DocPath} has no \"## \" section");
        (int Line, List<string> Text)? open = null;
        void Close()
        {
            if (open is { } item)
            {
                items.Add(new Item(item.Line, string.Join(' ', item.Text)));
            }
            open = null;
        }
        for (int i = first; i < lines.Length; i++)
        {
            string line = lines[i];
            if (line.Trim().Length == 0 || line.StartsWith('#') || line.StartsWith("---", StringComparison.Ordinal))
            {
                Close();
            }
            else if (ItemStart.IsMatch(line))
            {
                Close();
                open = (i + 1, [line.Trim()]);
            }
            else
            {
                open?.Text.Add(line.Trim());
            }
        }
        Close();
        return items;
    }

    [Fact]
    public void Every_case_id_the_document_cites_exists()
    {
        HashSet<string> ids = ConformanceCatalog.All.Select(c => c.Id).ToHashSet(StringComparer.Ordinal);
        List<string> unknown = CitedCases().Where(c => !ids.Contains(c.Id)).Select(c => $"line {c.Line}: `{c.Id}`").ToList();

        Assert.True(unknown.Count == 0,
            $"{DocPath} cites case ids no suite defines (see rstmemd conformance --list; write kernel files as paths, drivers/dma-buf/dma-buf.c):\n" + string.Join('\n', unknown));
    }

    [Fact]
    public void Every_case_is_cited_by_the_document()
    {
        HashSet<string> cited = CitedCases().Select(c => c.Id).ToHashSet(StringComparer.Ordinal);
        List<string> missing = ConformanceCatalog.All.Where(c => !cited.Contains(c.Id)).Select(c => $"`{c.Id}`: {c.Mirrors}").ToList();

        Assert.True(missing.Count == 0,
            $"{DocPath} cites these cases nowhere; name each at the rule it checks:\n" + string.Join('\n', missing));
    }

    [Fact]
    public void Every_rule_names_what_checks_it()
    {
        List<string> untagged = Rules()
            .Where(r => !CaseCitation.IsMatch(r.Text)
                && !(r.Text.Contains("model-only", StringComparison.OrdinalIgnoreCase) && TestCitation.IsMatch(r.Text))
                && !r.Text.Contains("not checked", StringComparison.OrdinalIgnoreCase))
            .Select(r => $"line {r.Line}: {r.Text[..Math.Min(100, r.Text.Length)]}")
            .ToList();

        Assert.True(untagged.Count == 0,
            $"rules in {DocPath} that name no case id, no \"model-only\" unit test and no \"not checked\" reason:\n" + string.Join('\n', untagged));
    }

    [Fact]
    public void Every_unit_test_the_document_cites_exists()
    {
        Assembly tests = typeof(KernelSemanticsDocTests).Assembly;
        var missing = new List<string>();
        foreach ((string text, int line) in Lines().Select((t, i) => (t, i + 1)))
        {
            foreach (Match citation in TestCitation.Matches(text))
            {
                Type? type = tests.GetTypes().SingleOrDefault(t => t.Name == citation.Groups[1].Value);
                MethodInfo? method = type?.GetMethod(citation.Groups[2].Value, BindingFlags.Public | BindingFlags.Instance);
                if (method?.GetCustomAttribute<FactAttribute>() is null)
                {
                    missing.Add($"line {line}: {citation.Value}");
                }
            }
        }

        Assert.True(missing.Count == 0, $"{DocPath} cites unit tests that do not exist (class.method, a [Fact] or [Theory]):\n" + string.Join('\n', missing));
    }

    [Fact]
    public void The_document_cites_only_sources_a_reader_has()
    {
        var offending = Lines().Select((t, i) => (Text: t, Line: i + 1))
            .Where(l => Regex.IsMatch(l.Text, @"\bseeds? \d|\babi\.md\b|\bshared/", RegexOptions.IgnoreCase))
            .Select(l => $"line {l.Line}: {l.Text.Trim()}")
            .ToList();

        Assert.True(offending.Count == 0, $"{DocPath} cites files outside this repository and the kernel (seed NNN, abi.md, shared/...):\n" + string.Join('\n', offending));
    }
}
