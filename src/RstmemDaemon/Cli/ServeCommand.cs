using System.CommandLine;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using Rstmem.Daemon.Backends;
using Rstmem.Daemon.Broker;
using Rstmem.Daemon.Hosting;
using Rstmem.Interop;
using Rstmem.Interop.Uapi;
using Rstmem.Interop.Kernel;
using Rstmem.Model;
using Serilog;
using Serilog.Events;

namespace Rstmem.Daemon.Cli;

/// <summary><c>rstmemd serve</c>: the broker, in the foreground (<see cref="DaemonLifetime"/>).</summary>
internal static class ServeCommand
{
    public const string DefaultConfig = "/etc/rstmemd/rstmemd.json";

    public static Command Create(TextWriter stderr)
    {
        var config = new Option<string?>("--config") { Description = $"configuration file (default {DefaultConfig}, if present)" };
        var backend = new Option<string?>("--backend") { Description = BackendNames.Expected + " (default auto; real never falls back to the model)" };
        var socket = new Option<string?>("--socket") { Description = "listening socket path (default /run/rstmemd/rstmemd.sock as root, else $XDG_RUNTIME_DIR/rstmemd.sock)" };
        var group = new Option<string?>("--socket-group") { Description = "group that may connect (socket mode 0660)" };
        var generation = new Option<string?>("--generation") { Description = "the model's kernel generation: v4, v6 or mainline" };
        var logLevel = new Option<string?>("--log-level") { Description = "Verbose, Debug, Information, Warning, Error or Fatal" };
        var command = new Command("serve", "run the broker in the foreground") { config, backend, socket, group, generation, logLevel };
        command.SetAction(result =>
        {
            var overrides = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
            void Put(string key, string? value)
            {
                if (value is not null)
                {
                    overrides[key] = value;
                }
            }
            Put("Backend", result.GetValue(backend));
            Put("Socket", result.GetValue(socket));
            Put("SocketGroup", result.GetValue(group));
            Put("Model:Generation", result.GetValue(generation));
            Put("LogLevel", result.GetValue(logLevel));
            return Serve(result.GetValue(config), overrides, stderr);
        });
        return command;
    }

    /// <summary>Loads the layered configuration and checks it; null and one line per problem on stderr when invalid.</summary>
    public static DaemonOptions? LoadOptions(string? configPath, IReadOnlyDictionary<string, string?> overrides, TextWriter stderr)
    {
        string path = configPath ?? DefaultConfig;
        if (configPath is not null && !File.Exists(configPath))
        {
            stderr.WriteLine($"rstmemd serve: --config: '{configPath}' does not exist; expected a JSON configuration file");
            return null;
        }
        var options = new DaemonOptions();
        try
        {
            new ConfigurationBuilder()
                .AddJsonFile(Path.GetFullPath(path), optional: configPath is null, reloadOnChange: false)
                .AddEnvironmentVariables("RSTMEMD_")
                .AddInMemoryCollection(overrides)
                .Build()
                .Bind(options);
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or InvalidDataException)
        {
            // The binder's own message names the key, the value and the type it wanted.
            stderr.WriteLine($"rstmemd serve: invalid configuration: {e.Message}");
            return null;
        }
        IReadOnlyList<string> problems = options.Validate();
        foreach (string problem in problems)
        {
            stderr.WriteLine($"rstmemd serve: invalid configuration: {problem}");
        }
        return problems.Count == 0 ? options : null;
    }

    private static int Serve(string? configPath, IReadOnlyDictionary<string, string?> overrides, TextWriter stderr)
    {
        DaemonOptions? options = LoadOptions(configPath, overrides, stderr);
        if (options is null)
        {
            return RstmemdCli.ExitFailure;
        }
        bool journal = !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("JOURNAL_STREAM"));
        using Serilog.Core.Logger serilog = DaemonLogging.Create(Enum.Parse<LogEventLevel>(options.LogLevel, ignoreCase: true), journal);
        using var loggerFactory = new Serilog.Extensions.Logging.SerilogLoggerFactory(serilog);
        Microsoft.Extensions.Logging.ILogger log = loggerFactory.CreateLogger("rstmemd");

        var aliases = new Dictionary<string, string>(HeapAliases.BuiltIn, StringComparer.Ordinal);
        foreach (var (heap, useCase) in options.HeapAliases)
        {
            aliases[heap] = useCase;
        }
        ListenerSocket? listener = null;
        BackendSelection? selection = null;
        HeapDirectoryWatch? heapWatch = null;
        try
        {
            SafeFd? activated = SocketActivation.TryTake(Environment.GetEnvironmentVariable, name => Environment.SetEnvironmentVariable(name, null), Environment.ProcessId);
            selection = BackendProbe.Select(options.Backend, LinuxKernel.Instance, () => new ModelKernel(options.Model), options.ExtraHeaps, aliases);
            foreach (string note in selection.Notes)
            {
                log.LogDebug("probe: {Note}", note);
            }
            log.LogInformation("{Announcement}", selection.Announcement);

            listener = activated is not null
                ? ListenerSocket.FromActivation(activated)
                : ListenerSocket.Bind(
                    options.Socket.Length > 0 ? options.Socket : ListenerSocket.DefaultPath(Sys.GetEffectiveUserId(), Environment.GetEnvironmentVariable("XDG_RUNTIME_DIR")),
                    options.SocketModeValue,
                    options.SocketGroup.Length > 0 ? GroupDatabase.TryGetGid(options.SocketGroup) : null);

            BackendSelection chosen = selection;
            Action refresh = Refresher(chosen, options.ExtraHeaps, aliases, log);
            heapWatch = chosen.Kind == BackendKind.DmaHeap ? new HeapDirectoryWatch() : null;
            var limits = new BrokerLimits(options.Limits.MaxBuffersPerUser, options.MaxBytesPerUserValue, options.Limits.MaxConnectionsPerUser);
            using BrokerServer server = DaemonComposition.Broker(listener.Fd, chosen, limits, loggerFactory, refresh, heapWatch);
            uint daemonUid = Sys.GetEffectiveUserId();
            server.Ledger.Policy.Swap(options.AccessPolicy(daemonUid));
            var lifetime = new DaemonLifetime(server, SystemdNotifier.FromEnvironment(), log)
            {
                Reload = () => Policy.PolicyReload.Reload(problems => LoadOptions(configPath, overrides, problems), server.Ledger.Policy, daemonUid, log),
            };
            return lifetime.Run($"{chosen.KindName}, {chosen.Heaps.Count} heap(s), listening on {listener.Path}");
        }
        catch (Exception e) when (e is StartupException or ErrnoException or ArgumentException)
        {
            log.LogCritical("cannot start: {Reason}", e.Message);
            stderr.WriteLine($"rstmemd serve: {e.Message}");
            return RstmemdCli.ExitFailure;
        }
        finally
        {
            heapWatch?.Dispose();
            listener?.Dispose();
            selection?.Dispose();
        }
    }

    /// <summary>Rescans heap nodes (module loads, removals) and logs what changed.</summary>
    private static Action Refresher(BackendSelection selection, List<string> extraHeaps, Dictionary<string, string> aliases, Microsoft.Extensions.Logging.ILogger log)
    {
        // v4 use cases come from the TEE and do not change; heap nodes next to them may.
        return () =>
        {
            var notes = new List<string>();
            IReadOnlyCollection<string> extras = selection.Kind == BackendKind.Model
                ? selection.Kernel.ListDirectory(DevicePaths.HeapDirectory)
                : extraHeaps;
            selection.Heaps.Refresh(selection.Kernel, extras, aliases, notes);
            foreach (string note in notes)
            {
                log.LogInformation("heaps changed: {Note}", note);
            }
        };
    }
}
