namespace Rstmem.Interop.Abi;

/// <summary>
/// Marks a struct that ends in a C flexible array member (<c>struct tee_ioctl_param params[]</c>),
/// which C# cannot declare as a field. The layout rules still count it: it
/// sets the struct's alignment and has an offset the ABI proof checks.
/// </summary>
[AttributeUsage(AttributeTargets.Struct, AllowMultiple = false, Inherited = false)]
public sealed class FlexibleArrayAttribute(string name, Type elementType) : Attribute
{
    public string Name { get; } = name;

    public Type ElementType { get; } = elementType;
}
