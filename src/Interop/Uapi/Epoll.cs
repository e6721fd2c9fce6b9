namespace Rstmem.Interop.Uapi;

/// <summary>
/// &lt;sys/epoll.h&gt;: the event bits (the same values as poll's, include/uapi/linux/eventpoll.h),
/// epoll_create1's flag and epoll_ctl's operations. <c>struct epoll_event</c> itself is
/// packed on x86_64 only (glibc's <c>__EPOLL_PACKED</c>; the kernel's <c>EPOLL_PACKED</c>),
/// a layout one C# struct cannot have on every architecture: <see cref="Sys.EpollEvent"/>
/// carries it, and <see cref="Sys.TryEpollWait"/> lays it out for the running architecture.
/// </summary>
public static class Epoll
{
    public const uint EPOLLIN = 0x001;
    public const uint EPOLLOUT = 0x004;
    public const uint EPOLLERR = 0x008;
    public const uint EPOLLHUP = 0x010;
    public const uint EPOLLRDHUP = 0x2000;

    public const int EPOLL_CLOEXEC = 0x80000;

    public const int EPOLL_CTL_ADD = 1;
    public const int EPOLL_CTL_DEL = 2;
    public const int EPOLL_CTL_MOD = 3;
}
