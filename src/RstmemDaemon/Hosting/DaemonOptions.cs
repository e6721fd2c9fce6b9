using Rstmem.Daemon.Backends;
using Rstmem.Daemon.Policy;
using System.Globalization;
using Rstmem.Interop;
using Rstmem.Model;

namespace Rstmem.Daemon.Hosting;

/// <summary>Per-user limits (dbus-broker style: every buffer and byte is charged to the uid that asked).</summary>
public sealed class LimitsOptions
{
    /// <summary>Buffers one uid may hold at once (handed out and not yet released).</summary>
    public int MaxBuffersPerUser { get; set; } = 4096;

    /// <summary>Bytes one uid may hold at once.</summary>
    public string MaxBytesPerUser { get; set; } = "4GiB";

    /// <summary>Connections one uid may have open.</summary>
    public int MaxConnectionsPerUser { get; set; } = 64;
}

/// <summary>
/// rstmemd's configuration: /etc/rstmemd/rstmemd.json (or --config), then
/// RSTMEMD_* environment variables, then command-line options.
/// </summary>
public sealed class DaemonOptions
{
    /// <summary>One of <see cref="BackendNames.All"/>: auto, model, tee or dma-heap.</summary>
    public string Backend { get; set; } = BackendNames.Auto;

    /// <summary>The listening socket's path; empty for the default.</summary>
    public string Socket { get; set; } = "";

    /// <summary>Group that owns the socket (clients in it may connect); empty to leave the creator's.</summary>
    public string SocketGroup { get; set; } = "";

    /// <summary>Octal permission bits of the socket.</summary>
    public string SocketMode { get; set; } = "0660";

    /// <summary>Plain or vendor heaps to offer besides the restricted ones (system, reserved, secure_video, ...).</summary>
    public List<string> ExtraHeaps { get; set; } = [];

    /// <summary>Heap name → use case, added to the built-in vendor table.</summary>
    public Dictionary<string, string> HeapAliases { get; set; } = new(StringComparer.Ordinal);

    public LimitsOptions Limits { get; set; } = new();

    /// <summary>Who may allocate from which heap, pool shares, who sees every user (rstmemd.json(5), "Access"); reloaded on SIGHUP.</summary>
    public AccessOptions Access { get; set; } = new();

    public ModelOptions Model { get; set; } = new();

    /// <summary>Verbose, Debug, Information, Warning, Error or Fatal.</summary>
    public string LogLevel { get; set; } = "Information";

    /// <summary>Every problem, one line each naming the key, the value and what was expected.</summary>
    public IReadOnlyList<string> Validate()
    {
        var problems = new List<string>();
        if (!BackendNames.All.Contains(Backend))
        {
            problems.Add($"Backend: '{Backend}' is not a backend; expected {BackendNames.Expected}");
        }
        if (Socket.Length > 0 && (!Socket.StartsWith('/') || System.Text.Encoding.UTF8.GetByteCount(Socket) > Interop.Uapi.sockaddr_un.MaxPathBytes))
        {
            problems.Add($"Socket: '{Socket}' is not usable; expected an absolute path of at most {Interop.Uapi.sockaddr_un.MaxPathBytes} bytes");
        }
        if (!TryParseMode(SocketMode, out _))
        {
            problems.Add($"SocketMode: '{SocketMode}' is not a permission mode; expected octal digits such as 0660");
        }
        if (SocketGroup.Length > 0 && GroupDatabase.TryGetGid(SocketGroup) is null)
        {
            problems.Add($"SocketGroup: '{SocketGroup}' is not a group in /etc/group; expected an existing group name");
        }
        foreach (var (heap, useCase) in HeapAliases)
        {
            if (UseCase.ByName(useCase) is null)
            {
                problems.Add($"HeapAliases:{heap}: '{useCase}' is not a use case; expected {string.Join(", ", UseCase.All.Select(u => u.Name))}");
            }
        }
        if (Limits.MaxBuffersPerUser <= 0)
        {
            problems.Add($"Limits:MaxBuffersPerUser: '{Limits.MaxBuffersPerUser}' is not allowed; expected a positive number");
        }
        if (Limits.MaxConnectionsPerUser <= 0)
        {
            problems.Add($"Limits:MaxConnectionsPerUser: '{Limits.MaxConnectionsPerUser}' is not allowed; expected a positive number");
        }
        if (!ByteSize.TryParse(Limits.MaxBytesPerUser, out long bytes) || bytes <= 0)
        {
            problems.Add($"Limits:MaxBytesPerUser: '{Limits.MaxBytesPerUser}' is not a size; expected {ByteSize.Expected}");
        }
        if (!Enum.TryParse<Serilog.Events.LogEventLevel>(LogLevel, ignoreCase: true, out _))
        {
            problems.Add($"LogLevel: '{LogLevel}' is not a level; expected Verbose, Debug, Information, Warning, Error or Fatal");
        }
        problems.AddRange(Access.Validate(name => PasswdDatabase.TryGetUid(name), name => GroupDatabase.TryGetGid(name)));
        problems.AddRange(Model.Validate());
        return problems;
    }

    public static bool TryParseMode(string text, out uint mode)
    {
        mode = 0;
        if (string.IsNullOrEmpty(text) || text.Length > 4 || text.Any(c => c is < '0' or > '7'))
        {
            return false;
        }
        mode = Convert.ToUInt32(text, 8);
        return true;
    }

    public long MaxBytesPerUserValue => ByteSize.Parse(Limits.MaxBytesPerUser, "Limits:MaxBytesPerUser");

    /// <summary>The access policy this configuration describes, for a daemon running as <paramref name="daemonUid"/>.</summary>
    public AccessPolicy AccessPolicy(uint daemonUid) =>
        Policy.AccessPolicy.From(Access, daemonUid, name => PasswdDatabase.TryGetUid(name), name => GroupDatabase.TryGetGid(name));

    public uint SocketModeValue => TryParseMode(SocketMode, out uint mode) ? mode : throw new FormatException(SocketMode);
}

/// <summary>/etc/group lookups (the daemon needs only name → gid).</summary>
public static class GroupDatabase
{
    public static uint? TryGetGid(string name, string path = "/etc/group")
    {
        if (!File.Exists(path))
        {
            return null;
        }
        foreach (string line in File.ReadLines(path))
        {
            string[] fields = line.Split(':');
            if (fields.Length >= 3 && fields[0] == name && uint.TryParse(fields[2], NumberStyles.None, CultureInfo.InvariantCulture, out uint gid))
            {
                return gid;
            }
        }
        return null;
    }
}
