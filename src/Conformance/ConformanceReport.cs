using System.Globalization;
using System.Text;

namespace Rstmem.Conformance;

/// <summary>Report formats: the text summary table, TAP version 13, JUnit XML.</summary>
public static class ConformanceReport
{
    public static string Cell(Outcome outcome) => outcome switch
    {
        Outcome.Pass => "pass",
        Outcome.Fail => "FAIL",
        _ => "skip",
    };

    public static string Totals(IReadOnlyList<CaseResult> results)
    {
        ArgumentNullException.ThrowIfNull(results);
        int cases = results.Select(r => r.Case.Id).Distinct().Count();
        return $"{results.Count(r => r.Outcome == Outcome.Pass)} passed, {results.Count(r => r.Outcome == Outcome.Fail)} failed, " +
               $"{results.Count(r => r.Outcome == Outcome.Skip)} skipped ({cases} cases on {results.Select(r => r.Target).Distinct().Count(t => t != "-")} targets)";
    }

    /// <summary>What was found, the failures with expected/observed, the skips with reasons, then cases × targets and the totals.</summary>
    public static string Text(ConformanceEnvironment environment, IReadOnlyList<CaseResult> results)
    {
        ArgumentNullException.ThrowIfNull(environment);
        ArgumentNullException.ThrowIfNull(results);
        var text = new StringBuilder();
        foreach (string line in environment.Found)
        {
            text.Append(CultureInfo.InvariantCulture, $"# {line}\n");
        }
        foreach (CaseResult failure in results.Where(r => r.Outcome == Outcome.Fail))
        {
            text.Append(CultureInfo.InvariantCulture, $"\nFAIL {failure.Case.Id} @ {failure.Target}: {failure.Case.Title}\n");
            text.Append(CultureInfo.InvariantCulture, $"     checks: {failure.Case.Mirrors}\n     {failure.Detail}\n");
        }
        IEnumerable<IGrouping<string, CaseResult>> skips = results.Where(r => r.Outcome == Outcome.Skip).GroupBy(r => r.Detail);
        foreach (IGrouping<string, CaseResult> reason in skips)
        {
            text.Append(CultureInfo.InvariantCulture, $"\nskip ({reason.Key}):\n     ");
            text.Append(string.Join(", ", reason.Select(r => r.Target == "-" ? r.Case.Id : $"{r.Case.Id} @ {r.Target}")));
            text.Append('\n');
        }
        text.Append('\n').Append(Table(results)).Append(Totals(results)).Append('\n');
        return text.ToString();
    }

    /// <summary>Rows are cases, columns are targets (numbered, with a legend above).</summary>
    public static string Table(IReadOnlyList<CaseResult> results)
    {
        ArgumentNullException.ThrowIfNull(results);
        List<string> targets = results.Select(r => r.Target).Distinct().ToList();
        List<string> cases = results.Select(r => r.Case.Id).Distinct().ToList();
        var cells = results.ToDictionary(r => (r.Case.Id, r.Target), r => Cell(r.Outcome));
        int idWidth = Math.Max(4, cases.Max(c => c.Length));
        var table = new StringBuilder("targets:");
        for (int i = 0; i < targets.Count; i++)
        {
            table.Append(CultureInfo.InvariantCulture, $" [{i + 1}] {(targets[i] == "-" ? "(none present)" : targets[i])}");
        }
        table.Append('\n').Append("case".PadRight(idWidth));
        for (int i = 0; i < targets.Count; i++)
        {
            table.Append(CultureInfo.InvariantCulture, $" {$"[{i + 1}]",-4}");
        }
        table.Append('\n');
        foreach (string id in cases)
        {
            table.Append(id.PadRight(idWidth));
            foreach (string target in targets)
            {
                table.Append(' ').Append((cells.TryGetValue((id, target), out string? cell) ? cell : "").PadRight(4));
            }
            table.Append('\n');
        }
        return table.ToString();
    }

    /// <summary>TAP version 13: one test point per (case, target), a YAML block with expected and observed for failures.</summary>
    public static string Tap(ConformanceEnvironment environment, IReadOnlyList<CaseResult> results)
    {
        ArgumentNullException.ThrowIfNull(environment);
        ArgumentNullException.ThrowIfNull(results);
        var tap = new StringBuilder("TAP version 13\n");
        tap.Append(CultureInfo.InvariantCulture, $"1..{results.Count}\n");
        foreach (string line in environment.Found)
        {
            tap.Append(CultureInfo.InvariantCulture, $"# {line}\n");
        }
        for (int i = 0; i < results.Count; i++)
        {
            CaseResult r = results[i];
            string name = $"{r.Case.Id} @ {r.Target} - {r.Case.Title}".Replace("#", "\\#", StringComparison.Ordinal);
            switch (r.Outcome)
            {
                case Outcome.Pass:
                    tap.Append(CultureInfo.InvariantCulture, $"ok {i + 1} {name}\n");
                    break;
                case Outcome.Skip:
                    tap.Append(CultureInfo.InvariantCulture, $"ok {i + 1} {name} # SKIP {r.Detail.Replace("\n", " ", StringComparison.Ordinal)}\n");
                    break;
                default:
                    tap.Append(CultureInfo.InvariantCulture, $"not ok {i + 1} {name}\n");
                    tap.Append("  ---\n");
                    tap.Append(CultureInfo.InvariantCulture, $"  message: {Yaml(r.Detail)}\n");
                    tap.Append(CultureInfo.InvariantCulture, $"  checks: {Yaml(r.Case.Mirrors)}\n");
                    tap.Append("  ...\n");
                    break;
            }
        }
        tap.Append(CultureInfo.InvariantCulture, $"# {Totals(results)}\n");
        return tap.ToString();
    }

    /// <summary>The encoding of every report: UTF-8 without a byte order mark (what JUnit's XML declaration says, and what TAP asks for).</summary>
    public static Encoding Encoding { get; } = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false);

    /// <summary>
    /// JUnit XML, as bytes: a testsuite per suite, a testcase per (case,
    /// target). Bytes, not a string, because the declaration names the
    /// encoding: exactly what it declares is written (UTF-8, no BOM). Written
    /// by hand (<see cref="XmlMarkup"/>): the format is five elements, and
    /// System.Xml would add its writer to every rstmemd binary's start-up.
    /// </summary>
    public static byte[] JUnit(ConformanceEnvironment environment, IReadOnlyList<CaseResult> results)
    {
        ArgumentNullException.ThrowIfNull(environment);
        ArgumentNullException.ThrowIfNull(results);
        var xml = new XmlMarkup();
        xml.Open("testsuites", 0, [("name", "rstmemd conformance"), .. Counts(results)]);
        foreach (IGrouping<string, CaseResult> suite in results.GroupBy(r => r.Case.Suite))
        {
            xml.Open("testsuite", 1, [("name", suite.Key), .. Counts([.. suite])]);
            xml.Open("properties", 2);
            foreach (string line in environment.Found)
            {
                int colon = line.IndexOf(':', StringComparison.Ordinal);
                xml.Empty("property", 3, ("name", colon > 0 ? line[..colon] : "found"), ("value", colon > 0 ? line[(colon + 1)..].Trim() : line));
            }
            xml.Close("properties", 2);
            foreach (CaseResult r in suite)
            {
                (string, string)[] attributes =
                [
                    ("classname", $"conformance.{r.Case.Suite}"),
                    ("name", $"{r.Case.Id} @ {r.Target}"),
                    ("time", r.Duration.TotalSeconds.ToString("0.000", CultureInfo.InvariantCulture)),
                ];
                if (r.Outcome == Outcome.Fail)
                {
                    xml.Open("testcase", 2, attributes);
                    xml.Element("failure", 3, $"{r.Case.Title}\nchecks: {r.Case.Mirrors}\n{r.Detail}", ("message", r.Detail));
                    xml.Close("testcase", 2);
                }
                else if (r.Outcome == Outcome.Skip)
                {
                    xml.Open("testcase", 2, attributes);
                    xml.Empty("skipped", 3, ("message", r.Detail));
                    xml.Close("testcase", 2);
                }
                else
                {
                    xml.Empty("testcase", 2, attributes);
                }
            }
            xml.Close("testsuite", 1);
        }
        xml.Close("testsuites", 0);
        return Encoding.GetBytes(xml.ToString());
    }

    private static (string, string)[] Counts(IReadOnlyList<CaseResult> results) =>
    [
        ("tests", results.Count.ToString(CultureInfo.InvariantCulture)),
        ("failures", results.Count(r => r.Outcome == Outcome.Fail).ToString(CultureInfo.InvariantCulture)),
        ("errors", "0"),
        ("skipped", results.Count(r => r.Outcome == Outcome.Skip).ToString(CultureInfo.InvariantCulture)),
        ("time", results.Sum(r => r.Duration.TotalSeconds).ToString("0.000", CultureInfo.InvariantCulture)),
    ];

    private static string Yaml(string text) => "'" + text.Replace("'", "''", StringComparison.Ordinal).Replace("\n", " ", StringComparison.Ordinal) + "'";
}
