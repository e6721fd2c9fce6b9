using System.Runtime.InteropServices;

namespace Rstmem.Interop;

public static partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "getegid")]
    private static partial uint getegid();

    /// <summary>getegid(2): the effective group id. Cannot fail.</summary>
    public static uint GetEffectiveGroupId() => getegid();
}
