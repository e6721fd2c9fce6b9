namespace Rstmem.Interop.Uapi;

/// <summary>poll(2) events (&lt;poll.h&gt;).</summary>
public static class Poll
{
    public const short POLLIN = 0x1;
    public const short POLLPRI = 0x2;
    public const short POLLOUT = 0x4;
    public const short POLLERR = 0x8;
    public const short POLLHUP = 0x10;
    public const short POLLNVAL = 0x20;
    public const short POLLRDHUP = 0x2000;
}

#pragma warning disable CS8981 // The C name.
public struct pollfd
#pragma warning restore CS8981
{
    public int fd;
    public short events;
    public short revents;
}
