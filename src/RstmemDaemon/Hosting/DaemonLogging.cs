using Serilog;
using Serilog.Core;
using Serilog.Events;

namespace Rstmem.Daemon.Hosting;

/// <summary>
/// Serilog, one line per event. Under systemd (JOURNAL_STREAM set) each line
/// starts with its syslog priority (&lt;6&gt; for information) and carries no
/// timestamp — the journal adds both; otherwise a UTC timestamp and level.
/// </summary>
public static class DaemonLogging
{
    public static Logger Create(LogEventLevel level, bool journal)
    {
        const string JournalTemplate = "<{SyslogPriority}>{Message:lj}{NewLine}{Exception}";
        const string ConsoleTemplate = "{Timestamp:yyyy-MM-ddTHH:mm:ss.fffZ} {Level:u3} {Message:lj}{NewLine}{Exception}";
        var configuration = new LoggerConfiguration()
            .MinimumLevel.Is(level)
            .Enrich.With<SyslogPriorityEnricher>();
        return configuration.WriteTo.Console(
                outputTemplate: journal ? JournalTemplate : ConsoleTemplate,
                standardErrorFromLevel: LogEventLevel.Verbose,
                formatProvider: System.Globalization.CultureInfo.InvariantCulture)
            .CreateLogger();
    }

    /// <summary>sd-daemon(3) priorities: debug 7, info 6, warning 4, err 3, crit 2.</summary>
    public static int SyslogPriority(LogEventLevel level) => level switch
    {
        LogEventLevel.Verbose or LogEventLevel.Debug => 7,
        LogEventLevel.Information => 6,
        LogEventLevel.Warning => 4,
        LogEventLevel.Error => 3,
        _ => 2,
    };

    private sealed class SyslogPriorityEnricher : ILogEventEnricher
    {
        public void Enrich(LogEvent logEvent, ILogEventPropertyFactory propertyFactory) =>
            logEvent.AddPropertyIfAbsent(propertyFactory.CreateProperty("SyslogPriority", SyslogPriority(logEvent.Level)));
    }
}
