namespace Rstmem.Interop.Abi;

/// <summary>offsetof() for the uapi structs, from their one C# definition (the ABI proof checks it against C).</summary>
public static class FieldOffset
{
    public static int Of<T>(string field) where T : unmanaged =>
        CLayout.Of(typeof(T), AbiTarget.Host).Offsets.Single(o => o.Key == field).Value;
}
