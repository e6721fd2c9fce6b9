using System.Runtime.InteropServices;

namespace Rstmem.Interop;

/// <summary>Names, messages and the single errno-to-exception helper.</summary>
public static class ErrnoExtensions
{
    /// <summary>The symbolic name, such as <c>EINVAL</c>; <c>errno 200</c> for a number Linux does not define.</summary>
    public static string Name(this Errno errno) =>
        Enum.IsDefined(errno) ? errno.ToString() : $"errno {(int)errno}";

    /// <summary>The C library's strerror text.</summary>
    public static string Message(this Errno errno) => Marshal.GetPInvokeErrorMessage((int)errno);

    /// <summary><c>EINVAL (22): Invalid argument</c>.</summary>
    public static string Describe(this Errno errno) => $"{errno.Name()} ({(int)errno}): {errno.Message()}";

    /// <summary>Throws <see cref="ErrnoException"/> unless <paramref name="errno"/> is <see cref="Errno.None"/>.</summary>
    public static void ThrowIfError(this Errno errno, string operation, string? subject = null)
    {
        if (errno != Errno.None)
        {
            throw new ErrnoException(errno, operation, subject);
        }
    }
}
