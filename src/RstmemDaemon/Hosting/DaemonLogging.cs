using System.Globalization;
using System.Text;
using Serilog;
using Serilog.Core;
using Serilog.Events;
using Serilog.Parsing;

namespace Rstmem.Daemon.Hosting;

/// <summary>
/// Serilog, one line per event. Under systemd (JOURNAL_STREAM set) each line
/// starts with its syslog priority (&lt;6&gt; for information) and carries no
/// timestamp — the journal adds both; otherwise a UTC timestamp and level.
/// Every string property is escaped first (<see cref="Escape"/>): clients choose
/// buffer names and heap targets, and a newline in one would start a line of
/// its own, which journald would read with whatever "&lt;0&gt;" it starts with.
/// Exceptions are rendered escaped on the same line. Events about a client
/// (those with a Uid property) are rate-limited per uid and message
/// (<see cref="ClientRateLimit"/>).
/// </summary>
public static class DaemonLogging
{
    private const string JournalTemplate = "<{SyslogPriority}>{Message:lj}{Error}{NewLine}";
    private const string ConsoleTemplate = "{Timestamp:yyyy-MM-ddTHH:mm:ss.fffZ} {Level:u3} {Message:lj}{Error}{NewLine}";

    public static Logger Create(LogEventLevel level, bool journal, Func<long>? milliseconds = null)
    {
        Logger console = new LoggerConfiguration()
            .MinimumLevel.Verbose()
            .WriteTo.Console(
                outputTemplate: journal ? JournalTemplate : ConsoleTemplate,
                standardErrorFromLevel: LogEventLevel.Verbose,
                formatProvider: CultureInfo.InvariantCulture)
            .CreateLogger();
        return Create(level, console, milliseconds);
    }

    /// <summary>The daemon's pipeline (escaping, priorities, the rate limit) in front of any <paramref name="sink"/> (tests pass their own).</summary>
    public static Logger Create(LogEventLevel level, ILogEventSink sink, Func<long>? milliseconds = null) =>
        new LoggerConfiguration()
            .MinimumLevel.Is(level)
            .Enrich.With<EscapingEnricher>()
            .Enrich.With<SyslogPriorityEnricher>()
            .WriteTo.Sink(new ClientRateLimit(sink, milliseconds ?? (() => Environment.TickCount64)))
            .CreateLogger();

    /// <summary>sd-daemon(3) priorities: debug 7, info 6, warning 4, err 3, crit 2.</summary>
    public static int SyslogPriority(LogEventLevel level) => level switch
    {
        LogEventLevel.Verbose or LogEventLevel.Debug => 7,
        LogEventLevel.Information => 6,
        LogEventLevel.Warning => 4,
        LogEventLevel.Error => 3,
        _ => 2,
    };

    /// <summary>
    /// Text safe for one log line: backslash, C0 and C1 controls (newline, ESC, ...), DEL, the
    /// Unicode line and paragraph separators and format characters (bidirectional overrides)
    /// become escapes (<c>\n</c>, <c>\x1b</c>, <c>\u2028</c>); invalid UTF-8 from a client already
    /// arrives as U+FFFD, and a lone surrogate is escaped. Nothing else changes.
    /// </summary>
    public static string Escape(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        int i = 0;
        while (i < text.Length && !NeedsEscape(text, i))
        {
            i++;
        }
        if (i == text.Length)
        {
            return text;
        }
        var builder = new StringBuilder(text.Length + 16);
        builder.Append(text, 0, i);
        for (; i < text.Length; i++)
        {
            char c = text[i];
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                builder.Append(c).Append(text[++i]);
                continue;
            }
            if (!NeedsEscape(text, i))
            {
                builder.Append(c);
                continue;
            }
            builder.Append(c switch
            {
                '\\' => "\\\\",
                '\n' => "\\n",
                '\r' => "\\r",
                '\t' => "\\t",
                _ when c < 0x100 => string.Create(CultureInfo.InvariantCulture, $"\\x{(int)c:x2}"),
                _ => string.Create(CultureInfo.InvariantCulture, $"\\u{(int)c:x4}"),
            });
        }
        return builder.ToString();
    }

    private static bool NeedsEscape(string text, int i)
    {
        char c = text[i];
        if (char.IsHighSurrogate(c))
        {
            return !(i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]));
        }
        if (char.IsLowSurrogate(c))
        {
            return !(i > 0 && char.IsHighSurrogate(text[i - 1]));
        }
        if (c == '\\' || char.IsControl(c))
        {
            return true;
        }
        UnicodeCategory category = CharUnicodeInfo.GetUnicodeCategory(c);
        return category is UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator or UnicodeCategory.Format;
    }

    private sealed class SyslogPriorityEnricher : ILogEventEnricher
    {
        public void Enrich(LogEvent logEvent, ILogEventPropertyFactory propertyFactory) =>
            logEvent.AddPropertyIfAbsent(propertyFactory.CreateProperty("SyslogPriority", SyslogPriority(logEvent.Level)));
    }

    /// <summary>Escapes every string property, and renders the exception (if any) escaped, on the same line.</summary>
    private sealed class EscapingEnricher : ILogEventEnricher
    {
        public void Enrich(LogEvent logEvent, ILogEventPropertyFactory propertyFactory)
        {
            foreach (var (name, value) in logEvent.Properties.ToList())
            {
                LogEventPropertyValue escaped = EscapeValue(value);
                if (!ReferenceEquals(escaped, value))
                {
                    logEvent.AddOrUpdateProperty(new LogEventProperty(name, escaped));
                }
            }
            string error = logEvent.Exception is null ? "" : " | " + Escape(logEvent.Exception.ToString());
            logEvent.AddOrUpdateProperty(new LogEventProperty("Error", new ScalarValue(error)));
        }

        private static LogEventPropertyValue EscapeValue(LogEventPropertyValue value) => value switch
        {
            ScalarValue { Value: string s } when Escape(s) is var e && !ReferenceEquals(e, s) => new ScalarValue(e),
            SequenceValue sequence => new SequenceValue(sequence.Elements.Select(EscapeValue)),
            StructureValue structure => new StructureValue(structure.Properties.Select(p => new LogEventProperty(Escape(p.Name), EscapeValue(p.Value))), structure.TypeTag),
            DictionaryValue dictionary => new DictionaryValue(dictionary.Elements.Select(e => new KeyValuePair<ScalarValue, LogEventPropertyValue>((ScalarValue)EscapeValue(e.Key), EscapeValue(e.Value)))),
            _ => value,
        };
    }
}

/// <summary>
/// Per-client rate limit: of the events about one uid (a <c>Uid</c> property) with one message
/// template, the first <see cref="Burst"/> in each <see cref="WindowMilliseconds"/> are written;
/// the rest are counted, and the count is written as one line before that uid's next such
/// message after the window (or when the daemon stops). A client flooding the daemon with bad
/// requests, or reconnecting to do so, writes a handful of lines a minute, not one per request.
/// </summary>
public sealed class ClientRateLimit(ILogEventSink inner, Func<long> milliseconds) : ILogEventSink, IDisposable
{
    public const int Burst = 5;
    public const long WindowMilliseconds = 60_000;

    private static readonly MessageTemplate SummaryTemplate = new MessageTemplateParser().Parse(
        "uid {Uid}: {Suppressed} more message(s) like \"{Template}\" were not logged (at most {Burst} a minute per uid and message)");

    private sealed class Window
    {
        public long Start;
        public int Written;
        public long Suppressed;
        public LogEventLevel Level;
    }

    private readonly Dictionary<(string Uid, string Template), Window> windows = [];
    private readonly Lock gate = new();

    public void Emit(LogEvent logEvent)
    {
        ArgumentNullException.ThrowIfNull(logEvent);
        if (logEvent.Level >= LogEventLevel.Fatal || !logEvent.Properties.TryGetValue("Uid", out LogEventPropertyValue? uid))
        {
            inner.Emit(logEvent);
            return;
        }
        var key = (uid.ToString(), logEvent.MessageTemplate.Text);
        LogEvent? summary = null;
        lock (gate)
        {
            long now = milliseconds();
            if (!windows.TryGetValue(key, out Window? window))
            {
                window = new Window { Start = now };
                windows[key] = window;
            }
            if (now - window.Start >= WindowMilliseconds)
            {
                summary = Summary(key, window, logEvent.Timestamp);
                window.Start = now;
                window.Written = 0;
                window.Suppressed = 0;
            }
            if (window.Written >= Burst)
            {
                window.Suppressed++;
                window.Level = (LogEventLevel)Math.Max((int)window.Level, (int)logEvent.Level);
                return;
            }
            window.Written++;
        }
        if (summary is not null)
        {
            inner.Emit(summary);
        }
        inner.Emit(logEvent);
    }

    private static LogEvent? Summary((string Uid, string Template) key, Window window, DateTimeOffset timestamp)
    {
        if (window.Suppressed == 0)
        {
            return null;
        }
        LogEventLevel level = window.Level < LogEventLevel.Information ? LogEventLevel.Information : window.Level;
        return new LogEvent(timestamp, level, null, SummaryTemplate,
        [
            new LogEventProperty("Uid", new ScalarValue(key.Uid)),
            new LogEventProperty("Suppressed", new ScalarValue(window.Suppressed)),
            new LogEventProperty("Template", new ScalarValue(DaemonLogging.Escape(key.Template))),
            new LogEventProperty("Burst", new ScalarValue(Burst)),
            new LogEventProperty("SyslogPriority", new ScalarValue(DaemonLogging.SyslogPriority(level))),
            new LogEventProperty("Error", new ScalarValue("")),
        ]);
    }

    /// <summary>Writes the counts still pending, then closes the sink it wraps.</summary>
    public void Dispose()
    {
        List<LogEvent> pending;
        lock (gate)
        {
            pending = [.. windows.Select(w => Summary(w.Key, w.Value, DateTimeOffset.UtcNow)).OfType<LogEvent>()];
            windows.Clear();
        }
        foreach (LogEvent summary in pending)
        {
            inner.Emit(summary);
        }
        (inner as IDisposable)?.Dispose();
    }
}
