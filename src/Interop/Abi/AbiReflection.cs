using System.Diagnostics.CodeAnalysis;
using System.Reflection;
using System.Reflection.Emit;
using System.Runtime.CompilerServices;

namespace Rstmem.Interop.Abi;

/// <summary>
/// Describes structs by reflection: the fields in metadata order, fixed-size
/// buffers from <see cref="FixedBufferAttribute"/>, flexible arrays from
/// <see cref="FlexibleArrayAttribute"/>, and the runtime layout measured with
/// generated code. Not for the daemon (NativeAOT has neither the metadata nor
/// the code generator): the uapi is declared explicitly in
/// <see cref="UapiCatalog"/>, and tests use this to check that declaration
/// against the C# structs themselves, and to describe the wire protocol.
/// </summary>
[RequiresUnreferencedCode("Reads struct fields and constants by reflection.")]
[RequiresDynamicCode("Measures field offsets with DynamicMethod and sizes with MakeGenericMethod.")]
public static class AbiReflection
{
    /// <summary>A struct as reflection sees it; nested structs described the same way.</summary>
    public static AbiStruct Describe(Type type)
    {
        ArgumentNullException.ThrowIfNull(type);
        if (!type.IsValueType || type.IsPrimitive || type.IsEnum)
        {
            throw new ArgumentException($"{type.Name} is not a struct", nameof(type));
        }
        var fields = new List<AbiField>();
        foreach (FieldInfo field in InstanceFields(type))
        {
            if (field.GetCustomAttribute<FixedBufferAttribute>() is { } buffer)
            {
                fields.Add(new AbiField(field.Name, TypeOf(buffer.ElementType), buffer.Length, MeasureOffset(field)));
            }
            else
            {
                fields.Add(new AbiField(field.Name, TypeOf(field.FieldType), 1, MeasureOffset(field)));
            }
        }
        AbiFlexibleArray? flexible = type.GetCustomAttribute<FlexibleArrayAttribute>() is { } attribute
            ? new AbiFlexibleArray(attribute.Name, TypeOf(attribute.ElementType))
            : null;
        int size = (int)typeof(Unsafe).GetMethod(nameof(Unsafe.SizeOf))!.MakeGenericMethod(type).Invoke(null, null)!;
        return new AbiStruct(type, fields, flexible, size);
    }

    /// <summary>The instance fields in declaration (metadata) order.</summary>
    public static IEnumerable<FieldInfo> InstanceFields(Type type)
    {
        ArgumentNullException.ThrowIfNull(type);
        return type.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic)
            .OrderBy(f => f.MetadataToken);
    }

    /// <summary>
    /// The catalog of one namespace: its structs, and the <see cref="Ioctl"/>
    /// fields and constants of its static classes (and, for the uapi, every
    /// <see cref="Errno"/>) — everything a C header there would declare.
    /// </summary>
    public static AbiCatalog Catalog(Assembly assembly, string ns, bool includeErrno)
    {
        ArgumentNullException.ThrowIfNull(assembly);
        Type[] types = assembly.GetTypes()
            .Where(t => t.Namespace == ns && !t.IsNested && !t.IsDefined(typeof(CompilerGeneratedAttribute)))
            .OrderBy(t => t.Name, StringComparer.Ordinal)
            .ToArray();

        var structs = types.Where(t => t.IsValueType && !t.IsEnum).Select(Describe).ToList();
        var ioctls = new List<KeyValuePair<string, Ioctl>>();
        var constants = new List<KeyValuePair<string, ulong>>();
        var strings = new List<KeyValuePair<string, string>>();
        foreach (Type holder in types.Where(t => t.IsAbstract && t.IsSealed))
        {
            foreach (FieldInfo field in holder.GetFields(BindingFlags.Public | BindingFlags.Static))
            {
                if (field.FieldType == typeof(Ioctl))
                {
                    ioctls.Add(new(field.Name, (Ioctl)field.GetValue(null)!));
                }
                else if (field.IsLiteral && field.FieldType.IsPrimitive)
                {
                    constants.Add(new(field.Name, AbiConstants.AsBits(field.GetRawConstantValue()!)));
                }
                else if (field.IsLiteral && field.FieldType == typeof(string))
                {
                    strings.Add(new(field.Name, (string)field.GetRawConstantValue()!));
                }
            }
        }
        if (includeErrno)
        {
            constants.AddRange(AbiConstants.Errnos());
        }
        return new AbiCatalog(structs, ioctls, constants, strings);
    }

    private static AbiType TypeOf(Type type) => AbiScalar.ForPrimitive(type) ?? (AbiType)Describe(type);

    private static int MeasureOffset(FieldInfo field)
    {
        // ldflda on a local minus the local's address: the managed layout itself, not the marshaller's idea of it.
        var method = new DynamicMethod($"offsetof_{field.Name}", typeof(nint), Type.EmptyTypes, typeof(AbiReflection).Module, skipVisibility: true);
        ILGenerator il = method.GetILGenerator();
        il.DeclareLocal(field.DeclaringType!);
        il.Emit(OpCodes.Ldloca_S, (byte)0);
        il.Emit(OpCodes.Ldflda, field);
        il.Emit(OpCodes.Ldloca_S, (byte)0);
        il.Emit(OpCodes.Sub);
        il.Emit(OpCodes.Ret);
        return (int)(nint)method.Invoke(null, null)!;
    }
}
