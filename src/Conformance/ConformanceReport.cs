using System.Globalization;
using System.Text;
using System.Xml;

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
    /// encoding: the writer encodes exactly what it declares (UTF-8, no BOM).
    /// </summary>
    public static byte[] JUnit(ConformanceEnvironment environment, IReadOnlyList<CaseResult> results)
    {
        ArgumentNullException.ThrowIfNull(environment);
        ArgumentNullException.ThrowIfNull(results);
        using var output = new MemoryStream();
        var settings = new XmlWriterSettings { Indent = true, OmitXmlDeclaration = false, Encoding = Encoding, NewLineChars = "\n" };
        using (var xml = XmlWriter.Create(output, settings))
        {
            xml.WriteStartElement("testsuites");
            xml.WriteAttributeString("name", "rstmemd conformance");
            Counts(xml, results);
            foreach (IGrouping<string, CaseResult> suite in results.GroupBy(r => r.Case.Suite))
            {
                xml.WriteStartElement("testsuite");
                xml.WriteAttributeString("name", suite.Key);
                Counts(xml, suite.ToList());
                xml.WriteStartElement("properties");
                foreach (string line in environment.Found)
                {
                    xml.WriteStartElement("property");
                    int colon = line.IndexOf(':', StringComparison.Ordinal);
                    xml.WriteAttributeString("name", colon > 0 ? line[..colon] : "found");
                    xml.WriteAttributeString("value", colon > 0 ? line[(colon + 1)..].Trim() : line);
                    xml.WriteEndElement();
                }
                xml.WriteEndElement();
                foreach (CaseResult r in suite)
                {
                    xml.WriteStartElement("testcase");
                    xml.WriteAttributeString("classname", $"conformance.{r.Case.Suite}");
                    xml.WriteAttributeString("name", $"{r.Case.Id} @ {r.Target}");
                    xml.WriteAttributeString("time", r.Duration.TotalSeconds.ToString("0.000", CultureInfo.InvariantCulture));
                    if (r.Outcome == Outcome.Fail)
                    {
                        xml.WriteStartElement("failure");
                        xml.WriteAttributeString("message", r.Detail);
                        xml.WriteString($"{r.Case.Title}\nchecks: {r.Case.Mirrors}\n{r.Detail}");
                        xml.WriteEndElement();
                    }
                    else if (r.Outcome == Outcome.Skip)
                    {
                        xml.WriteStartElement("skipped");
                        xml.WriteAttributeString("message", r.Detail);
                        xml.WriteEndElement();
                    }
                    xml.WriteEndElement();
                }
                xml.WriteEndElement();
            }
            xml.WriteEndElement();
        }
        output.WriteByte((byte)'\n');
        return output.ToArray();
    }

    private static void Counts(XmlWriter xml, IReadOnlyList<CaseResult> results)
    {
        xml.WriteAttributeString("tests", results.Count.ToString(CultureInfo.InvariantCulture));
        xml.WriteAttributeString("failures", results.Count(r => r.Outcome == Outcome.Fail).ToString(CultureInfo.InvariantCulture));
        xml.WriteAttributeString("errors", "0");
        xml.WriteAttributeString("skipped", results.Count(r => r.Outcome == Outcome.Skip).ToString(CultureInfo.InvariantCulture));
        xml.WriteAttributeString("time", results.Sum(r => r.Duration.TotalSeconds).ToString("0.000", CultureInfo.InvariantCulture));
    }

    private static string Yaml(string text) => "'" + text.Replace("'", "''", StringComparison.Ordinal).Replace("\n", " ", StringComparison.Ordinal) + "'";
}
