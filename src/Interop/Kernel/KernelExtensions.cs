using System.Runtime.InteropServices;

namespace Rstmem.Interop.Kernel;

/// <summary>Typed conveniences over the byte-level <see cref="IKernel"/> surface.</summary>
public static class KernelExtensions
{
    /// <summary>ioctl with a struct argument, written back in place.</summary>
    public static Errno Ioctl<T>(this IKernel kernel, SafeFd fd, uint request, ref T argument, out int result)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(kernel);
        return kernel.Ioctl(fd, request, MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref argument, 1)), out result);
    }

    /// <summary>fdinfo as key/value pairs (<c>size</c>, <c>count</c>, <c>exp_name</c>, <c>name</c>, ...).</summary>
    public static Errno ReadFdInfoFields(this IKernel kernel, SafeFd fd, out IReadOnlyDictionary<string, string> fields)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        Errno errno = kernel.ReadFdInfo(fd, out string text);
        fields = errno == Errno.None ? FdInfo.Parse(text) : new Dictionary<string, string>();
        return errno;
    }
}

/// <summary>The "key:\tvalue" lines of /proc/PID/fdinfo/N.</summary>
public static class FdInfo
{
    public static IReadOnlyDictionary<string, string> Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var fields = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            int colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon > 0)
            {
                fields[line[..colon]] = line[(colon + 1)..].Trim();
            }
        }
        return fields;
    }
}
