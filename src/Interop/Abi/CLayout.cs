using System.Reflection;
using System.Runtime.CompilerServices;

namespace Rstmem.Interop.Abi;

/// <summary>A struct's size, alignment and field offsets under one architecture's C rules.</summary>
public sealed record StructLayoutDescription(int Size, int Alignment, IReadOnlyList<KeyValuePair<string, int>> Offsets);

/// <summary>
/// Lays out a C# struct by the C rules of an <see cref="AbiTarget"/>: fields in
/// declaration order, each at the next multiple of its alignment, the size
/// rounded up to the largest alignment. For the host this must equal what the
/// runtime does (a test checks it); for other targets it is what lets the ABI
/// proof show the C# definitions are right on boards this build does not run on.
/// </summary>
public static class CLayout
{
    public static StructLayoutDescription Of(Type type, AbiTarget target)
    {
        ArgumentNullException.ThrowIfNull(type);
        ArgumentNullException.ThrowIfNull(target);
        if (!type.IsValueType)
        {
            throw new ArgumentException($"{type.Name} is not a value type", nameof(type));
        }
        if (type.IsPrimitive || type.IsPointer)
        {
            (int size, int align) = Scalar(type, target);
            return new StructLayoutDescription(size, align, []);
        }

        int offset = 0;
        int alignment = 1;
        var offsets = new List<KeyValuePair<string, int>>();
        foreach (FieldInfo field in InstanceFields(type))
        {
            (int size, int align) = FieldShape(field, target);
            offset = AlignUp(offset, align);
            offsets.Add(new(field.Name, offset));
            offset += size;
            alignment = Math.Max(alignment, align);
        }
        if (type.GetCustomAttribute<FlexibleArrayAttribute>() is { } flexible)
        {
            int align = Of(flexible.ElementType, target).Alignment;
            offset = AlignUp(offset, align);
            offsets.Add(new(flexible.Name, offset));
            alignment = Math.Max(alignment, align);
        }
        return new StructLayoutDescription(AlignUp(offset, alignment), alignment, offsets);
    }

    /// <summary>The instance fields in declaration (metadata) order.</summary>
    public static IEnumerable<FieldInfo> InstanceFields(Type type) =>
        type.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic)
            .OrderBy(f => f.MetadataToken);

    private static (int Size, int Align) FieldShape(FieldInfo field, AbiTarget target)
    {
        if (field.GetCustomAttribute<FixedBufferAttribute>() is { } buffer)
        {
            (int size, int align) = Scalar(buffer.ElementType, target);
            return (size * buffer.Length, align);
        }
        Type type = field.FieldType;
        if (type.IsPrimitive || type.IsPointer)
        {
            return Scalar(type, target);
        }
        StructLayoutDescription nested = Of(type, target);
        return (nested.Size, nested.Alignment);
    }

    private static (int Size, int Align) Scalar(Type type, AbiTarget target)
    {
        if (type.IsPointer || type == typeof(nint) || type == typeof(nuint))
        {
            return (target.PointerSize, target.PointerSize);
        }
        return Type.GetTypeCode(type) switch
        {
            TypeCode.Byte or TypeCode.SByte or TypeCode.Boolean => (1, 1),
            TypeCode.Int16 or TypeCode.UInt16 or TypeCode.Char => (2, 2),
            TypeCode.Int32 or TypeCode.UInt32 or TypeCode.Single => (4, 4),
            TypeCode.Int64 or TypeCode.UInt64 or TypeCode.Double => (8, target.Int64Alignment),
            _ => throw new NotSupportedException($"no C layout rule for {type}"),
        };
    }

    private static int AlignUp(int value, int alignment) => (value + alignment - 1) / alignment * alignment;
}
