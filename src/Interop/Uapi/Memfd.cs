namespace Rstmem.Interop.Uapi;

/// <summary>memfd_create(2) flags (include/uapi/linux/memfd.h, via &lt;sys/mman.h&gt;).</summary>
public static class Memfd
{
    public const uint MFD_CLOEXEC = 0x1;
    public const uint MFD_ALLOW_SEALING = 0x2;
}
