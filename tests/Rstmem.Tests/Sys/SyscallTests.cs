using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using Rstmem.Interop;
using Rstmem.Interop.Uapi;
using Rstmem.Tests.Support;

namespace Rstmem.Tests.Sys;

using Sys = Rstmem.Interop.Sys;

public sealed class SyscallTests
{
    [Fact]
    public void A_failed_call_carries_a_typed_errno_with_name_and_message()
    {
        Errno errno = Sys.TryOpen("/nonexistent/rstmemd-test", Fcntl.O_RDONLY, out SafeFd fd);

        Assert.Equal(Errno.ENOENT, errno);
        Assert.True(fd.IsInvalid);
        Assert.Equal("ENOENT", errno.Name());
        Assert.Equal("No such file or directory", errno.Message());
        var error = Assert.Throws<ErrnoException>(() => Sys.Open("/nonexistent/rstmemd-test", Fcntl.O_RDONLY));
        Assert.Equal(Errno.ENOENT, error.Errno);
        Assert.Equal("open(/nonexistent/rstmemd-test): ENOENT (2): No such file or directory", error.Message);
        Assert.Equal("errno 200", ((Errno)200).Name());
    }

    [Fact]
    public void Every_descriptor_the_wrappers_create_is_close_on_exec()
    {
        using SafeFd devNull = Sys.Open("/dev/null", Fcntl.O_RDONLY);
        Assert.Equal(Errno.None, Sys.TryMemfdCreate("rstmemd-test", 0, out SafeFd memfd));
        Assert.Equal(Errno.None, Sys.TrySocket(Sockets.AF_UNIX, Sockets.SOCK_SEQPACKET, 0, out SafeFd socket));
        Assert.Equal(Errno.None, Sys.TrySocketPair(Sockets.AF_UNIX, Sockets.SOCK_SEQPACKET, 0, out SafeFd left, out SafeFd right));
        Assert.Equal(Errno.None, Sys.TryInotifyInit(0, out SafeFd inotify));
        Assert.Equal(Errno.None, Sys.TryDuplicate(devNull, out SafeFd copy));
        SafeFd[] all = [devNull, memfd, socket, left, right, inotify, copy];
        try
        {
            Assert.All(all, fd => Assert.True(Sys.IsCloseOnExec(fd)));
        }
        finally
        {
            foreach (SafeFd fd in all)
            {
                fd.Dispose();
            }
        }
    }

    [Fact]
    public void A_sealed_memfd_reports_its_size_through_lseek_and_refuses_writes()
    {
        Assert.Equal(Errno.None, Sys.TryMemfdCreate("rstmemd-sealed", Memfd.MFD_ALLOW_SEALING, out SafeFd memfd));
        using (memfd)
        {
            long length = 2 * (long)Interop.Kernel.Page.Size;
            Assert.Equal(Errno.None, Sys.TryFTruncate(memfd, length));
            int seals = Fcntl.F_SEAL_SHRINK | Fcntl.F_SEAL_GROW | Fcntl.F_SEAL_WRITE | Fcntl.F_SEAL_SEAL;
            Assert.Equal(Errno.None, Sys.TryFcntl(memfd, Fcntl.F_ADD_SEALS, seals, out _));
            Assert.Equal(Errno.None, Sys.TryFcntl(memfd, Fcntl.F_GET_SEALS, 0, out int present));
            Assert.Equal(seals, present);

            Assert.Equal(Errno.None, Sys.TryLSeek(memfd, 0, Fcntl.SEEK_END, out long size));
            Assert.Equal(length, size);
            Assert.Equal(Errno.EPERM, Sys.TryWrite(memfd, "x"u8, out _));
            Assert.Equal(Errno.EPERM, Sys.TryFTruncate(memfd, length / 2));
            Assert.Equal(Errno.EPERM, Sys.TryMmap(memfd, (nuint)length, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_SHARED, 0, out _));
            Assert.Equal(Errno.None, Sys.TryMmap(memfd, (nuint)length, Mman.PROT_READ, Mman.MAP_SHARED, 0, out nint mapped));
            Assert.Equal(Errno.None, Sys.TryMunmap(mapped, (nuint)length));
        }
    }

    [Fact]
    public void A_memfd_named_in_bytes_carries_that_name_and_a_name_without_its_one_NUL_is_refused()
    {
        Assert.Equal(Errno.None, Sys.TryMemfdCreate("heap:42\0"u8, 0, out SafeFd memfd));
        using (memfd)
        {
            Assert.Equal("/memfd:heap:42 (deleted)", new FileInfo($"/proc/self/fd/{memfd.DangerousFd}").LinkTarget);
        }
        Assert.Throws<ArgumentException>(() => Sys.TryMemfdCreate("heap:42"u8, 0, out _));
        Assert.Throws<ArgumentException>(() => Sys.TryMemfdCreate("heap\0:42\0"u8, 0, out _));
        Assert.Throws<ArgumentException>(() => Sys.TryMemfdCreate(ReadOnlySpan<byte>.Empty, 0, out _));
    }

    [Fact]
    public void An_unknown_ioctl_on_a_plain_file_gives_ENOTTY()
    {
        Assert.Equal(Errno.None, Sys.TryMemfdCreate("rstmemd-ioctl", 0, out SafeFd memfd));
        using (memfd)
        {
            var sync = new dma_buf_sync { flags = DmaBuf.DMA_BUF_SYNC_READ };
            Assert.Equal(Errno.ENOTTY, Sys.TryIoctl(memfd, DmaBuf.DMA_BUF_IOCTL_SYNC, ref sync, out int result));
            Assert.Equal(-1, result);
        }
    }

    [Fact]
    public void Descriptors_cross_a_socket_with_SCM_RIGHTS_and_arrive_close_on_exec()
    {
        Assert.Equal(Errno.None, Sys.TrySocketPair(Sockets.AF_UNIX, Sockets.SOCK_SEQPACKET, 0, out SafeFd sender, out SafeFd receiver));
        Assert.Equal(Errno.None, Sys.TryMemfdCreate("rstmemd-passed", 0, out SafeFd memfd));
        using (sender)
        using (receiver)
        using (memfd)
        {
            Assert.Equal(Errno.None, Sys.TryWrite(memfd, "payload"u8, out _));

            Assert.Equal(Errno.None, Sys.TrySendMessage(sender, "hello"u8, [memfd], 0, out int sent));
            Assert.Equal(5, sent);

            byte[] buffer = new byte[64];
            Assert.Equal(Errno.None, Sys.TryReceiveMessage(receiver, buffer, 4, 0, out ReceivedMessage message));
            Assert.Equal("hello", Encoding.ASCII.GetString(buffer, 0, message.Length));
            Assert.False(message.ControlTruncated);
            SafeFd received = Assert.Single(message.Fds);
            using (received)
            {
                Assert.True(Sys.IsCloseOnExec(received));
                Assert.NotEqual(memfd.DangerousFd, received.DangerousFd);
                // Same open file: same contents, shared offset.
                Assert.Equal(Errno.None, Sys.TryLSeek(received, 0, Fcntl.SEEK_SET, out _));
                Assert.Equal(Errno.None, Sys.TryRead(received, buffer, out int read));
                Assert.Equal("payload", Encoding.ASCII.GetString(buffer, 0, read));
            }
        }
    }

    [Fact]
    public void Truncated_control_data_is_reported_and_what_did_arrive_is_owned()
    {
        Assert.Equal(Errno.None, Sys.TrySocketPair(Sockets.AF_UNIX, Sockets.SOCK_SEQPACKET, 0, out SafeFd sender, out SafeFd receiver));
        using (sender)
        using (receiver)
        {
            SafeFd[] files = Enumerable.Range(0, 4).Select(_ => Sys.Open("/dev/null", Fcntl.O_RDONLY)).ToArray();
            Assert.Equal(Errno.None, Sys.TrySendMessage(sender, "x"u8, files, 0, out _));
            foreach (SafeFd file in files)
            {
                file.Dispose();
            }

            Assert.Equal(Errno.None, Sys.TryReceiveMessage(receiver, new byte[8], 1, 0, out ReceivedMessage message));

            Assert.True(message.ControlTruncated);
            Assert.InRange(message.Fds.Length, 1, 3);
            Assert.All(message.Fds, fd => Assert.True(Sys.IsCloseOnExec(fd)));
            message.CloseFds();
            Assert.All(message.Fds, fd => Assert.True(fd.IsClosed));
        }
    }

    [Fact]
    public void A_message_longer_than_the_buffer_is_reported_truncated()
    {
        Assert.Equal(Errno.None, Sys.TrySocketPair(Sockets.AF_UNIX, Sockets.SOCK_SEQPACKET, 0, out SafeFd sender, out SafeFd receiver));
        using (sender)
        using (receiver)
        {
            Assert.Equal(Errno.None, Sys.TrySendMessage(sender, new byte[100], [], 0, out _));
            Assert.Equal(Errno.None, Sys.TryReceiveMessage(receiver, new byte[10], 0, 0, out ReceivedMessage message));
            Assert.True(message.PayloadTruncated);
            Assert.Equal(10, message.Length);
            Assert.Empty(message.Fds);
        }
    }

    [Fact]
    public void Sending_to_a_closed_peer_gives_EPIPE_not_SIGPIPE()
    {
        Assert.Equal(Errno.None, Sys.TrySocketPair(Sockets.AF_UNIX, Sockets.SOCK_SEQPACKET, 0, out SafeFd sender, out SafeFd receiver));
        receiver.Dispose();
        using (sender)
        {
            Assert.Equal(Errno.EPIPE, Sys.TrySendMessage(sender, "x"u8, [], 0, out _));
        }
    }

    [Fact]
    public void The_peer_of_a_listening_socket_is_known_by_pid_and_uid()
    {
        string dir = Directory.CreateTempSubdirectory("rstmemd-sock-").FullName;
        string path = Path.Combine(dir, "test.sock");
        try
        {
            Assert.Equal(Errno.None, Sys.TrySocket(Sockets.AF_UNIX, Sockets.SOCK_SEQPACKET, 0, out SafeFd listener));
            using (listener)
            {
                Assert.Equal(Errno.None, Sys.TryBindUnix(listener, path));
                Assert.Equal(Errno.None, Sys.TryChmod(path, Convert.ToUInt32("660", 8)));
                Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.GroupWrite, File.GetUnixFileMode(path));
                Assert.Equal(Errno.None, Sys.TryListen(listener, 4));

                Assert.Equal(Errno.None, Sys.TrySocket(Sockets.AF_UNIX, Sockets.SOCK_SEQPACKET, 0, out SafeFd client));
                using (client)
                {
                    Assert.Equal(Errno.None, Sys.TryConnectUnix(client, path));
                    Assert.Equal(Errno.None, Sys.TryAccept(listener, 0, out SafeFd connection));
                    using (connection)
                    {
                        Assert.True(Sys.IsCloseOnExec(connection));
                        Assert.Equal(Errno.None, Sys.TryGetPeerCredentials(connection, out ucred peer));
                        Assert.Equal(Environment.ProcessId, peer.pid);
                        Assert.Equal(Sys.GetEffectiveUserId(), peer.uid);
                        Assert.Equal(Sys.GetEffectiveGroupId(), peer.gid);
                        Assert.Equal(Errno.None, Sys.TryGetPeerGroups(connection, out uint[] groups));
                        Assert.Equal(SupplementaryGroups(), groups.Order());
                    }
                }
                Assert.Equal(Errno.None, Sys.TryUnlink(path));
                Assert.Equal(Errno.ENOENT, Sys.TryUnlink(path));
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void The_peer_groups_are_the_supplementary_groups_of_the_connecting_process()
    {
        Assert.SkipUnless(Sys.GetEffectiveUserId() == 0, "giving a client process supplementary groups (setpriv --groups) needs root");
        uint[] expected = [1234, 5678];
        string dir = Directory.CreateTempSubdirectory("rstmemd-sock-").FullName;
        string path = Path.Combine(dir, "groups.sock");
        try
        {
            Assert.Equal(Errno.None, Sys.TrySocket(Sockets.AF_UNIX, Sockets.SOCK_SEQPACKET, 0, out SafeFd listener));
            using (listener)
            {
                Assert.Equal(Errno.None, Sys.TryBindUnix(listener, path));
                Assert.Equal(Errno.None, Sys.TryListen(listener, 4));
                // The client connects and waits until this side closes.
                using Process client = Process.Start(new ProcessStartInfo("setpriv",
                    ["--groups", string.Join(',', expected), "--", "python3", "-c",
                     "import socket, sys; s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); s.connect(sys.argv[1]); s.recv(1)", path]))!;
                try
                {
                    Span<pollfd> fds = [new pollfd { fd = listener.DangerousFd, events = Poll.POLLIN }];
                    Assert.Equal(Errno.None, Sys.TryPoll(fds, GiveUp.Milliseconds, out int ready));
                    Assert.True(ready == 1, $"no connection within {GiveUp.After.TotalSeconds} s (the give-up bound)");
                    Assert.Equal(Errno.None, Sys.TryAccept(listener, 0, out SafeFd connection));
                    using (connection)
                    {
                        Assert.Equal(Errno.None, Sys.TryGetPeerCredentials(connection, out ucred peer));
                        Assert.Equal(client.Id, peer.pid); // setpriv execs the client
                        Assert.Equal(Errno.None, Sys.TryGetPeerGroups(connection, out uint[] groups));
                        Assert.Equal(expected, groups.Order());
                    }
                    Assert.True(client.WaitForExit(GiveUp.Milliseconds), "the client did not exit once the connection closed");
                }
                finally
                {
                    if (!client.HasExited)
                    {
                        client.Kill();
                    }
                }
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Connecting_to_a_path_with_no_listener_is_refused()
    {
        Assert.Equal(Errno.None, Sys.TrySocket(Sockets.AF_UNIX, Sockets.SOCK_SEQPACKET, 0, out SafeFd client));
        using (client)
        {
            Assert.Equal(Errno.ENOENT, Sys.TryConnectUnix(client, "/nonexistent/rstmemd.sock"));
        }
        var error = Assert.Throws<ArgumentException>(() => sockaddr_un.ForPath(new string('a', 108), out _));
        Assert.Contains("at most 107", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Inotify_on_proc_self_fd_reports_the_last_close_anywhere_and_not_before()
    {
        Assert.Equal(Errno.None, Sys.TryInotifyInit(Inotify.IN_NONBLOCK, out SafeFd inotify));
        Assert.Equal(Errno.None, Sys.TryMemfdCreate("rstmemd-release", 0, out SafeFd memfd));
        using (inotify)
        {
            Assert.Equal(Errno.None, Sys.TryInotifyAddWatch(inotify, $"/proc/self/fd/{memfd.DangerousFd}", Inotify.IN_CLOSE_WRITE | Inotify.IN_CLOSE_NOWRITE, out int watch));
            Assert.Equal(Errno.None, Sys.TryDuplicate(memfd, out SafeFd copy));

            // The last close queues its events before close(2) returns (__fput runs as task
            // work on the way back to user space: fs/file_table.c, fput), so "not yet" is
            // asked without waiting, and "now" needs no wait either; the bound only ends a hang.
            memfd.Dispose();
            Assert.Empty(WaitForEvents(inotify, 0));

            copy.Dispose();
            List<inotify_event> events = WaitForEvents(inotify, GiveUp.Milliseconds);
            Assert.NotEmpty(events);
            Assert.All(events, e => Assert.Equal(watch, e.wd));
            Assert.Contains(events, e => (e.mask & (Inotify.IN_CLOSE | Inotify.IN_IGNORED)) != 0);
        }
    }

    /// <summary>This process's supplementary groups, as /proc/self/status lists them (fs/proc/array.c, task_state).</summary>
    private static IEnumerable<uint> SupplementaryGroups()
    {
        string line = File.ReadLines("/proc/self/status").Single(l => l.StartsWith("Groups:", StringComparison.Ordinal));
        return line["Groups:".Length..].Split((char[])[' ', '\t'], StringSplitOptions.RemoveEmptyEntries)
            .Select(g => uint.Parse(g, System.Globalization.CultureInfo.InvariantCulture)).Order();
    }

    private static List<inotify_event> WaitForEvents(SafeFd inotify, int timeoutMilliseconds)
    {
        Span<pollfd> fds = [new pollfd { fd = inotify.DangerousFd, events = Poll.POLLIN }];
        Assert.Equal(Errno.None, Sys.TryPoll(fds, timeoutMilliseconds, out int ready));
        var events = new List<inotify_event>();
        if (ready == 0)
        {
            return events;
        }
        byte[] buffer = new byte[4096];
        Assert.Equal(Errno.None, Sys.TryRead(inotify, buffer, out int length));
        for (int offset = 0; offset < length;)
        {
            inotify_event e = MemoryMarshal.Read<inotify_event>(buffer.AsSpan(offset));
            events.Add(e);
            offset += Marshal.SizeOf<inotify_event>() + (int)e.len;
        }
        return events;
    }
}
