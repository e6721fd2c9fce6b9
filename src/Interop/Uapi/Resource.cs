namespace Rstmem.Interop.Uapi;

/// <summary>&lt;sys/resource.h&gt;: whose priority setpriority(2) sets (include/uapi/linux/resource.h).</summary>
public static class Resource
{
    /// <summary>One process, or on Linux one thread when given a thread id (setpriority(2), NOTES).</summary>
    public const int PRIO_PROCESS = 0;
}
