namespace Rstmem.Interop.Kernel;

/// <summary>The page size and the kernel's PAGE_ALIGN, for the model and for the conformance tester's expectations.</summary>
public static class Page
{
    public static ulong Size { get; } = (ulong)Environment.SystemPageSize;

    /// <summary>PAGE_ALIGN: up to whole pages, wrapping to 0 within a page of 2^64 as the kernel's does.</summary>
    public static ulong Align(ulong length) => unchecked((length + Size - 1) & ~(Size - 1));
}
