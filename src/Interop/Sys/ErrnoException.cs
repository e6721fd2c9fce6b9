namespace Rstmem.Interop;

/// <summary>A failed system call: which call, on what, and the errno it left.</summary>
public sealed class ErrnoException : IOException
{
    public ErrnoException(Errno errno, string operation, string? subject = null)
        : base(Format(errno, operation, subject))
    {
        Errno = errno;
        Operation = operation;
        Subject = subject;
        HResult = (int)errno;
    }

    public ErrnoException() : this(Errno.None, "unknown") { }

    public ErrnoException(string message) : base(message) { Operation = "unknown"; }

    public ErrnoException(string message, Exception innerException) : base(message, innerException) { Operation = "unknown"; }

    public Errno Errno { get; }

    /// <summary>The system call, such as <c>open</c> or <c>ioctl(DMA_HEAP_IOCTL_ALLOC)</c>.</summary>
    public string Operation { get; }

    /// <summary>What it was called on: a path, an fd number, or null.</summary>
    public string? Subject { get; }

    private static string Format(Errno errno, string operation, string? subject) =>
        subject is null ? $"{operation}: {errno.Describe()}" : $"{operation}({subject}): {errno.Describe()}";
}
