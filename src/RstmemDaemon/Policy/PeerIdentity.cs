using System.Globalization;
using Rstmem.Interop;
using Rstmem.Interop.Uapi;

namespace Rstmem.Daemon.Policy;

/// <summary>
/// Who is at the other end of a client socket, as the kernel says: SO_PEERCRED (uid, gid, pid at
/// connect), SO_PEERGROUPS (supplementary groups), SO_PEERSEC (LSM label), and, read on first
/// use, the systemd unit of its cgroup through SO_PEERPIDFD. Never SCM_CREDENTIALS: a client
/// chooses what it sends there, not what the kernel recorded at connect.
/// </summary>
public sealed class PeerIdentity
{
    private readonly Lazy<(string? Unit, string Problem)> unit;

    public PeerIdentity(uint uid, uint gid, int pid, IReadOnlyList<uint> groups, string? label, string labelProblem, Func<(string? Unit, string Problem)> readUnit)
    {
        Uid = uid;
        Gid = gid;
        Pid = pid;
        Groups = groups;
        Label = label;
        LabelProblem = labelProblem;
        unit = new Lazy<(string?, string)>(readUnit, LazyThreadSafetyMode.ExecutionAndPublication);
    }

    public uint Uid { get; }

    public uint Gid { get; }

    public int Pid { get; }

    /// <summary>Supplementary groups (SO_PEERGROUPS); the primary <see cref="Gid"/> is checked besides.</summary>
    public IReadOnlyList<uint> Groups { get; }

    /// <summary>The LSM label, or null with <see cref="LabelProblem"/> saying why.</summary>
    public string? Label { get; }

    public string LabelProblem { get; }

    /// <summary>The innermost systemd unit of the peer's cgroup, or null with <see cref="UnitProblem"/> saying why.</summary>
    public string? Unit => unit.Value.Unit;

    public string UnitProblem => unit.Value.Problem;

    public bool InGroup(uint gid) => Gid == gid || Groups.Contains(gid);

    /// <summary>A peer with no groups, label or unit (tests, and the daemon's own view when a sockopt fails).</summary>
    public static PeerIdentity Of(uint uid, uint gid, int pid = 0, IReadOnlyList<uint>? groups = null, string? label = null, string? unit = null) =>
        new(uid, gid, pid, groups ?? [], label, label is null ? "no LSM label was given" : "", () => (unit, unit is null ? "no unit was given" : ""));

    /// <summary>Reads what the kernel knows about the peer of <paramref name="socket"/>; the unit is read when a rule first needs it.</summary>
    public static PeerIdentity Read(SafeFd socket, in ucred credentials)
    {
        Errno errno = Sys.TryGetPeerGroups(socket, out uint[] groups);
        if (errno != Errno.None)
        {
            groups = []; // Linux before 4.13: only the primary group counts
        }
        errno = Sys.TryGetPeerSecurityLabel(socket, out string label);
        string labelProblem = errno switch
        {
            Errno.None => "",
            Errno.ENOPROTOOPT => "no LSM gives this system labels (SO_PEERSEC: ENOPROTOOPT)",
            _ => $"SO_PEERSEC: {errno.Describe()}",
        };
        return new PeerIdentity(credentials.uid, credentials.gid, credentials.pid, groups, errno == Errno.None ? label : null, labelProblem,
            () => PeerUnit.Read(socket));
    }
}

/// <summary>The systemd unit of a socket's peer, read without a pid-reuse race.</summary>
public static class PeerUnit
{
    /// <summary>
    /// SO_PEERPIDFD gives a pidfd for the process that connected; its fdinfo's <c>Pid:</c> is that
    /// process's pid in our namespace (kernel/fork.c, pidfd_show_fdinfo); /proc/PID/cgroup is read;
    /// then a signal 0 through the pidfd proves the process did not exit (and the pid was not
    /// reused) while the file was read. Linux before 6.5 has no SO_PEERPIDFD: no unit, said so.
    /// </summary>
    public static (string? Unit, string Problem) Read(SafeFd socket)
    {
        Errno errno = Sys.TryGetPeerPidFd(socket, out SafeFd pidfd);
        using (pidfd)
        {
            if (errno == Errno.ENOPROTOOPT)
            {
                return (null, "this kernel has no SO_PEERPIDFD (Linux 6.5+), so the peer's unit cannot be read race-free");
            }
            if (errno != Errno.None)
            {
                return (null, $"SO_PEERPIDFD: {errno.Describe()}");
            }
            string fdinfo;
            string cgroup;
            int pid;
            try
            {
                fdinfo = File.ReadAllText($"/proc/self/fdinfo/{pidfd.DangerousFd.ToString(CultureInfo.InvariantCulture)}");
                pid = FdinfoPid(fdinfo);
                if (pid <= 0)
                {
                    return (null, "the peer's process has exited");
                }
                cgroup = File.ReadAllText($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/cgroup");
            }
            catch (IOException e)
            {
                return (null, $"cannot read the peer's cgroup: {e.Message}");
            }
            catch (UnauthorizedAccessException e)
            {
                return (null, $"cannot read the peer's cgroup: {e.Message}");
            }
            errno = Sys.TryProbePidFd(pidfd);
            if (errno == Errno.ESRCH)
            {
                return (null, "the peer's process exited while its cgroup was read");
            }
            string? path = UnifiedPath(cgroup);
            if (path is null)
            {
                return (null, "the peer's /proc/PID/cgroup has no cgroup v2 line (0::)");
            }
            string? unit = InnermostUnit(path);
            return unit is null ? (null, $"the peer's cgroup {path} is in no systemd unit") : (unit, "");
        }
    }

    /// <summary>The <c>Pid:</c> line of a pidfd's fdinfo; -1 (exited) or 0 when absent.</summary>
    public static int FdinfoPid(string fdinfo)
    {
        foreach (string line in fdinfo.Split('\n'))
        {
            if (line.StartsWith("Pid:", StringComparison.Ordinal) &&
                int.TryParse(line.AsSpan(4).Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int pid))
            {
                return pid;
            }
        }
        return 0;
    }

    /// <summary>The cgroup v2 path (the <c>0::</c> line) of a /proc/PID/cgroup file.</summary>
    public static string? UnifiedPath(string cgroupFile)
    {
        foreach (string line in cgroupFile.Split('\n'))
        {
            if (line.StartsWith("0::", StringComparison.Ordinal))
            {
                return line[3..].Trim();
            }
        }
        return null;
    }

    /// <summary>
    /// The innermost component ending in .service or .scope: "foo.service" for
    /// /system.slice/foo.service, "app.service" for a user unit under user@1000.service.
    /// </summary>
    public static string? InnermostUnit(string cgroupPath) =>
        cgroupPath.Split('/', StringSplitOptions.RemoveEmptyEntries)
            .LastOrDefault(c => c.EndsWith(".service", StringComparison.Ordinal) || c.EndsWith(".scope", StringComparison.Ordinal));
}
