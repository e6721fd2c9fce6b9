using System.Diagnostics;
using System.Text;
using Rstmem.Interop;
using Rstmem.Interop.Uapi;

namespace Rstmem.Tests.Support;

/// <summary>
/// A second process (src/Native/helpers/rstmem-fdholder.c) that receives a
/// descriptor over SCM_RIGHTS, holds it, and closes it when told.
/// </summary>
internal sealed class FdHolder : IDisposable
{
    private readonly Process process;
    private readonly SafeFd socket;

    public FdHolder()
    {
        string helper = Path.Combine(RepoPaths.NativeBuildDir, "rstmem-fdholder");
        Assert.True(File.Exists(helper), $"{helper} is missing: building Rstmem.Tests builds it (cmake)");
        Assert.Equal(Errno.None, Interop.Sys.TrySocketPair(Sockets.AF_UNIX, Sockets.SOCK_STREAM, 0, out socket, out SafeFd childEnd));
        using (childEnd)
        {
            // The child's end must survive exec: clear close-on-exec on it alone.
            Assert.Equal(Errno.None, Interop.Sys.TryFcntl(childEnd, Fcntl.F_SETFD, 0, out _));
            var info = new ProcessStartInfo(helper, childEnd.DangerousFd.ToString(System.Globalization.CultureInfo.InvariantCulture))
            {
                UseShellExecute = false,
            };
            process = Process.Start(info)!;
        }
    }

    public int ProcessId => process.Id;

    /// <summary>Sends the descriptor; returns the size the child's lseek(SEEK_END) reports.</summary>
    public long Give(SafeFd fd)
    {
        Assert.Equal(Errno.None, Interop.Sys.TrySendMessage(socket, "F"u8, [fd], 0, out _));
        string reply = ReadReply();
        Assert.StartsWith("R", reply, StringComparison.Ordinal);
        return long.Parse(reply[1..].Trim(), System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>Tells the child to close its copy; returns once it has.</summary>
    public void Close()
    {
        Assert.Equal(Errno.None, Interop.Sys.TryWrite(socket, "C"u8, out _));
        Assert.Equal("D", ReadReply());
    }

    private string ReadReply()
    {
        byte[] buffer = new byte[64];
        Assert.Equal(Errno.None, Interop.Sys.TryRead(socket, buffer, out int length));
        return Encoding.ASCII.GetString(buffer, 0, length);
    }

    public void Dispose()
    {
        socket.Dispose();
        if (!process.WaitForExit(5000))
        {
            process.Kill();
        }
        process.Dispose();
    }
}
