namespace Rstmem.Interop.Abi;

/// <summary>offsetof() for the uapi structs, as this process lays them out (the ABI proof checks the declarations against C).</summary>
public static class FieldOffset
{
    public static int Of<T>(string field) where T : unmanaged =>
        (AbiCatalog.Current.Find(typeof(T))
            ?? throw new ArgumentException($"{typeof(T).Name} is not a struct of the uapi catalog (src/Interop/Abi/UapiCatalog.cs)", nameof(T)))
        .RuntimeOffsetOf(field);
}
