using Rstmem.Interop;
using Rstmem.Interop.Uapi;
using Rstmem.Tests.Abi;
using Rstmem.Tests.Support;

namespace Rstmem.Tests.Sys;

using Sys = Rstmem.Interop.Sys;

/// <summary>epoll: struct epoll_event's per-architecture layout against C, and the wrappers against the kernel.</summary>
public sealed class EpollTests
{
    [Theory]
    [InlineData("x86_64")]
    [InlineData("aarch64")]
    [InlineData("arm")]
    public void The_epoll_event_layout_is_what_C_says_on(string arch)
    {
        Toolchain toolchain = Toolchain.ByName(arch);
        string dir = Directory.CreateTempSubdirectory("rstmem-epoll-probe-").FullName;
        try
        {
            string source = Path.Combine(dir, "probe.c");
            string binary = Path.Combine(dir, "probe");
            File.WriteAllText(source, """
                #include <stddef.h>
                #include <stdio.h>
                #include <sys/epoll.h>
                int main(void)
                {
                    printf("%zu %zu\n", sizeof(struct epoll_event), offsetof(struct epoll_event, data));
                    return 0;
                }
                """);
            ProcessResult compile = ProcessRunner.Run(toolchain.Compiler, [.. toolchain.Flags, "-Wall", "-Werror", "-o", binary, source]);
            Assert.True(compile.ExitCode == 0, compile.ToString());
            ProcessResult run = toolchain.Emulator is null ? ProcessRunner.Run(binary, []) : ProcessRunner.Run(toolchain.Emulator, [binary]);
            Assert.True(run.ExitCode == 0, run.ToString());

            (int size, int dataOffset) = Sys.EpollEventLayout(toolchain.Target);

            Assert.Equal($"{size} {dataOffset}", run.Stdout.Trim());
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Several_ready_descriptors_come_back_with_their_own_64_bit_tokens()
    {
        // Three at once: on x86_64 the packed entries are spread out in place, so a wrong order would mix them up.
        Assert.Equal(Errno.None, Sys.TryEpollCreate(out SafeFd epoll));
        var pairs = new List<(SafeFd Left, SafeFd Right)>();
        try
        {
            for (int i = 0; i < 3; i++)
            {
                Assert.Equal(Errno.None, Sys.TrySocketPair(Sockets.AF_UNIX, Sockets.SOCK_SEQPACKET, 0, out SafeFd left, out SafeFd right));
                pairs.Add((left, right));
                Assert.Equal(Errno.None, Sys.TryEpollControl(epoll, Epoll.EPOLL_CTL_ADD, left, Epoll.EPOLLIN, 0x1122334455667700UL + (ulong)i));
                Assert.Equal(Errno.None, Sys.TryWrite(right, [1], out _));
            }
            var events = new Sys.EpollEvent[8];

            Assert.Equal(Errno.None, Sys.TryEpollWait(epoll, events, 1000, out int ready));

            Assert.Equal(3, ready);
            Assert.Equal(
                [0x1122334455667700UL, 0x1122334455667701UL, 0x1122334455667702UL],
                events.Take(ready).Select(e => e.Data).Order());
            Assert.All(events.Take(ready), e => Assert.Equal(Epoll.EPOLLIN, e.Events));
        }
        finally
        {
            pairs.ForEach(p => { p.Left.Dispose(); p.Right.Dispose(); });
            epoll.Dispose();
        }
    }

    [Fact]
    public void A_modified_registration_reports_only_what_it_asks_for()
    {
        Assert.Equal(Errno.None, Sys.TryEpollCreate(out SafeFd epoll));
        Assert.Equal(Errno.None, Sys.TrySocketPair(Sockets.AF_UNIX, Sockets.SOCK_SEQPACKET, 0, out SafeFd left, out SafeFd right));
        using (epoll)
        using (left)
        using (right)
        {
            Assert.Equal(Errno.None, Sys.TryEpollControl(epoll, Epoll.EPOLL_CTL_ADD, left, Epoll.EPOLLIN, 7));
            var events = new Sys.EpollEvent[4];
            Assert.Equal(Errno.None, Sys.TryEpollWait(epoll, events, 0, out int ready));
            Assert.Equal(0, ready); // nothing to read yet, and EPOLLOUT was not asked for

            Assert.Equal(Errno.None, Sys.TryEpollControl(epoll, Epoll.EPOLL_CTL_MOD, left, Epoll.EPOLLOUT, 8));
            Assert.Equal(Errno.None, Sys.TryEpollWait(epoll, events, 0, out ready));
            Assert.Equal(1, ready);
            Assert.Equal((Epoll.EPOLLOUT, 8UL), (events[0].Events, events[0].Data));

            Assert.Equal(Errno.None, Sys.TryEpollControl(epoll, Epoll.EPOLL_CTL_DEL, left, 0, 0));
            Assert.Equal(Errno.ENOENT, Sys.TryEpollControl(epoll, Epoll.EPOLL_CTL_DEL, left, 0, 0));
            Assert.Equal(Errno.None, Sys.TryEpollWait(epoll, events, 0, out ready));
            Assert.Equal(0, ready);
        }
    }
}
