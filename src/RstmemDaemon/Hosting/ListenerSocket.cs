using Rstmem.Daemon.Protocol;
using Rstmem.Daemon.Backends;
using Rstmem.Interop;
using Rstmem.Interop.Uapi;

namespace Rstmem.Daemon.Hosting;

/// <summary>
/// The socket clients connect to: handed over by systemd, or bound here.
/// Binding refuses to take over a path where a live daemon answers, replaces
/// a stale socket file, and never removes anything that is not a socket.
/// </summary>
public sealed class ListenerSocket : IDisposable
{
    private ListenerSocket(SafeFd fd, string path, bool activated)
    {
        Fd = fd;
        Path = path;
        Activated = activated;
    }

    public SafeFd Fd { get; }

    public string Path { get; }

    public bool Activated { get; }

    /// <summary>The default path: /run/rstmemd/rstmemd.sock for root, $XDG_RUNTIME_DIR/rstmemd.sock otherwise.</summary>
    public static string DefaultPath(uint euid, string? xdgRuntimeDir)
    {
        if (euid == 0)
        {
            return RstmemProtocol.RSTMEM_DEFAULT_SOCKET;
        }
        if (string.IsNullOrEmpty(xdgRuntimeDir))
        {
            throw new StartupException("XDG_RUNTIME_DIR is not set, so there is no default socket path for a non-root daemon; pass --socket PATH");
        }
        return System.IO.Path.Combine(xdgRuntimeDir, "rstmemd.sock");
    }

    public static ListenerSocket FromActivation(SafeFd fd) => new(fd, "(socket activation)", activated: true);

    /// <summary>Binds, chmods and (optionally) chgrps the socket at <paramref name="path"/>, then listens.</summary>
    public static ListenerSocket Bind(string path, uint mode, uint? group)
    {
        ArgumentNullException.ThrowIfNull(path);
        string? directory = System.IO.Path.GetDirectoryName(path);
        if (!string.IsNullOrEmpty(directory) && !Directory.Exists(directory))
        {
            Directory.CreateDirectory(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute |
                UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        }
        ReplaceStale(path);

        Sys.TrySocket(Sockets.AF_UNIX, Sockets.SOCK_SEQPACKET | Sockets.SOCK_NONBLOCK, 0, out SafeFd fd).ThrowIfError("socket");
        try
        {
            Sys.TryBindUnix(fd, path).ThrowIfError("bind", path);
            Sys.TryChmod(path, mode).ThrowIfError("chmod", path);
            if (group is { } gid)
            {
                Sys.TryChown(path, Sys.Unchanged, gid).ThrowIfError("chown", path);
            }
            Sys.TryListen(fd, 128).ThrowIfError("listen", path);
            return new ListenerSocket(fd, path, activated: false);
        }
        catch
        {
            fd.Dispose();
            throw;
        }
    }

    private static void ReplaceStale(string path)
    {
        Sys.TrySocket(Sockets.AF_UNIX, Sockets.SOCK_SEQPACKET, 0, out SafeFd probe).ThrowIfError("socket");
        using (probe)
        {
            Errno errno = Sys.TryConnectUnix(probe, path);
            if (errno == Errno.ENOENT)
            {
                return;
            }
            if (errno == Errno.None)
            {
                string who = Sys.TryGetPeerCredentials(probe, out ucred peer) == Errno.None ? $" (pid {peer.pid})" : "";
                throw new StartupException($"another rstmemd is already serving on {path}{who}; stop it or pass --socket PATH");
            }
            if (errno != Errno.ECONNREFUSED)
            {
                throw new StartupException($"cannot tell whether {path} is in use: connect: {errno.Describe()}");
            }
        }
        // Refused: a socket nobody listens on (stale) — or not a socket at all, which is never removed.
        Errno opened = Sys.TryOpen(path, Fcntl.O_RDONLY | Fcntl.O_NONBLOCK, out SafeFd file);
        file.Dispose();
        if (opened != Errno.ENXIO)
        {
            throw new StartupException($"{path} exists and is not a socket; refusing to replace it");
        }
        Errno unlinked = Sys.TryUnlink(path);
        if (unlinked is not (Errno.None or Errno.ENOENT))
        {
            throw new StartupException($"cannot remove the stale socket {path}: {unlinked.Describe()}");
        }
    }

    public void Dispose()
    {
        Fd.Dispose();
        if (!Activated)
        {
            Sys.TryUnlink(Path);
        }
    }
}
