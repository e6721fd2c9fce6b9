using System.Diagnostics.CodeAnalysis;

namespace Rstmem.Interop.Abi;

/// <summary>A struct's size, alignment and field offsets under one architecture's C rules.</summary>
public sealed record StructLayoutDescription(int Size, int Alignment, IReadOnlyList<KeyValuePair<string, int>> Offsets);

/// <summary>
/// Lays out a struct by the C rules of an <see cref="AbiTarget"/>: fields in
/// declaration order, each at the next multiple of its alignment, the size
/// rounded up to the largest alignment. For the host this must equal what the
/// runtime does (a test checks it); for other targets it is what lets the ABI
/// proof show the C# definitions are right on boards this build does not run on.
/// </summary>
public static class CLayout
{
    public static StructLayoutDescription Of(AbiStruct type, AbiTarget target)
    {
        ArgumentNullException.ThrowIfNull(type);
        ArgumentNullException.ThrowIfNull(target);
        int offset = 0;
        int alignment = 1;
        var offsets = new List<KeyValuePair<string, int>>(type.Fields.Count + 1);
        foreach (AbiField field in type.Fields)
        {
            int align = field.Type.AlignmentOn(target);
            offset = AlignUp(offset, align);
            offsets.Add(new(field.Name, offset));
            offset += field.Type.SizeOn(target) * field.Length;
            alignment = Math.Max(alignment, align);
        }
        if (type.Flexible is { } flexible)
        {
            int align = flexible.Element.AlignmentOn(target);
            offset = AlignUp(offset, align);
            offsets.Add(new(flexible.Name, offset));
            alignment = Math.Max(alignment, align);
        }
        return new StructLayoutDescription(AlignUp(offset, alignment), alignment, offsets);
    }

    /// <summary>
    /// Any C# type: a primitive, a struct of the uapi catalog (as declared
    /// there), or any other struct read by reflection (a wire protocol's,
    /// in tests). The daemon itself lays out only declared structs.
    /// </summary>
    [RequiresUnreferencedCode("Reads the fields of structs outside the uapi catalog by reflection.")]
    [RequiresDynamicCode("Measures the runtime layout of structs outside the uapi catalog with generated code.")]
    public static StructLayoutDescription Of(Type type, AbiTarget target)
    {
        ArgumentNullException.ThrowIfNull(type);
        ArgumentNullException.ThrowIfNull(target);
        if (!type.IsValueType && !type.IsPointer)
        {
            throw new ArgumentException($"{type.Name} is not a value type", nameof(type));
        }
        if (AbiScalar.ForPrimitive(type) is { } scalar)
        {
            return new StructLayoutDescription(scalar.SizeOn(target), scalar.AlignmentOn(target), []);
        }
        return Of(AbiCatalog.Current.Find(type) ?? AbiReflection.Describe(type), target);
    }

    private static int AlignUp(int value, int alignment) => (value + alignment - 1) / alignment * alignment;
}
