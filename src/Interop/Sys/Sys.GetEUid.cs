using System.Runtime.InteropServices;

namespace Rstmem.Interop;

public static partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "geteuid")]
    private static partial uint geteuid();

    /// <summary>geteuid(2): the effective user id (0 for root). Cannot fail.</summary>
    public static uint GetEffectiveUserId() => geteuid();
}
