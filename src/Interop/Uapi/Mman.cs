namespace Rstmem.Interop.Uapi;

/// <summary>mmap(2) protections and flags (&lt;sys/mman.h&gt;).</summary>
public static class Mman
{
    public const int PROT_NONE = 0x0;
    public const int PROT_READ = 0x1;
    public const int PROT_WRITE = 0x2;
    public const int MAP_SHARED = 0x1;
    public const int MAP_PRIVATE = 0x2;
}
