using System.Reflection;
using System.Runtime.CompilerServices;
using System.Reflection.Emit;
using Rstmem.Interop.Uapi;

namespace Rstmem.Interop.Abi;

/// <summary>Everything kernel- and libc-facing that rstmemd declares, described for one architecture.</summary>
public sealed record AbiDescription(
    string Arch,
    IReadOnlyDictionary<string, uint> Ioctls,
    IReadOnlyDictionary<string, StructLayoutDescription> Structs,
    IReadOnlyDictionary<string, ulong> Constants);

/// <summary>
/// The inventory of the ABI, found by reflection so nothing can be declared
/// and escape the proof: every struct in <c>Rstmem.Interop.Uapi</c>, every
/// <see cref="Ioctl"/> field and integral constant of its static classes, and
/// every <see cref="Errno"/>. The ABI test compiles C against the real headers
/// for each entry.
/// </summary>
public sealed class AbiCatalog
{
    private AbiCatalog(
        IReadOnlyList<Type> structs,
        IReadOnlyList<KeyValuePair<string, Ioctl>> ioctls,
        IReadOnlyList<KeyValuePair<string, ulong>> constants,
        IReadOnlyList<KeyValuePair<string, string>> strings)
    {
        Structs = structs;
        Ioctls = ioctls;
        Constants = constants;
        StringConstants = strings;
    }

    /// <summary>The kernel and libc ABI: everything in Rstmem.Interop.Uapi, plus errno.</summary>
    public static AbiCatalog Current { get; } = ForNamespace(typeof(Tee).Assembly, typeof(Tee).Namespace!, includeErrno: true);

    public IReadOnlyList<Type> Structs { get; }

    public IReadOnlyList<KeyValuePair<string, Ioctl>> Ioctls { get; }

    /// <summary>Integral constants as 64-bit patterns (signed values sign-extended, as C's cast to unsigned long long does).</summary>
    public IReadOnlyList<KeyValuePair<string, ulong>> Constants { get; }

    /// <summary>String constants (C string literal macros).</summary>
    public IReadOnlyList<KeyValuePair<string, string>> StringConstants { get; }

    /// <summary>What the C# definitions give on <paramref name="target"/> under its C layout rules.</summary>
    public AbiDescription Describe(AbiTarget target) => new(
        target.Name,
        Ioctls.ToDictionary(i => i.Key, i => i.Value.ValueFor(target)),
        Structs.ToDictionary(s => s.Name, s => CLayout.Of(s, target)),
        Constants.ToDictionary(c => c.Key, c => c.Value));

    /// <summary>What this process actually uses: sizes and offsets from the runtime, request values as computed at startup.</summary>
    public AbiDescription DescribeRuntime() => new(
        AbiTarget.Host.Name,
        Ioctls.ToDictionary(i => i.Key, i => i.Value.Value),
        Structs.ToDictionary(s => s.Name, RuntimeLayout),
        Constants.ToDictionary(c => c.Key, c => c.Value));

    /// <summary>
    /// The runtime's own layout of a struct: Unsafe.SizeOf, and each field's
    /// offset measured as the distance between the addresses of the struct
    /// and of the field (ldflda), so it is the managed layout itself, not the
    /// marshaller's idea of it.
    /// </summary>
    public static StructLayoutDescription RuntimeLayout(Type type)
    {
        ArgumentNullException.ThrowIfNull(type);
        int size = (int)typeof(Unsafe).GetMethod(nameof(Unsafe.SizeOf))!.MakeGenericMethod(type).Invoke(null, null)!;
        var offsets = CLayout.InstanceFields(type)
            .Select(f => new KeyValuePair<string, int>(f.Name, MeasureOffset(f)))
            .ToList();
        StructLayoutDescription host = CLayout.Of(type, AbiTarget.Host);
        if (type.GetCustomAttribute<FlexibleArrayAttribute>() is { } flexible)
        {
            // A flexible array member has no C# field; its offset is the C rule's.
            offsets.Add(host.Offsets.Single(o => o.Key == flexible.Name));
        }
        return new StructLayoutDescription(size, host.Alignment, offsets);
    }

    private static int MeasureOffset(FieldInfo field)
    {
        var method = new DynamicMethod($"offsetof_{field.Name}", typeof(nint), Type.EmptyTypes, typeof(AbiCatalog).Module, skipVisibility: true);
        ILGenerator il = method.GetILGenerator();
        il.DeclareLocal(field.DeclaringType!);
        il.Emit(OpCodes.Ldloca_S, (byte)0);
        il.Emit(OpCodes.Ldflda, field);
        il.Emit(OpCodes.Ldloca_S, (byte)0);
        il.Emit(OpCodes.Sub);
        il.Emit(OpCodes.Ret);
        return (int)(nint)method.Invoke(null, null)!;
    }

    /// <summary>
    /// The catalog of one namespace: its structs, and the <see cref="Ioctl"/>
    /// fields and constants of its static classes — for the uapi, or for a
    /// wire protocol defined by a C header.
    /// </summary>
    public static AbiCatalog ForNamespace(Assembly assembly, string ns, bool includeErrno = false)
    {
        ArgumentNullException.ThrowIfNull(assembly);
        Type[] types = assembly.GetTypes()
            .Where(t => t.Namespace == ns && !t.IsNested && !t.IsDefined(typeof(CompilerGeneratedAttribute)))
            .OrderBy(t => t.Name, StringComparer.Ordinal)
            .ToArray();

        var structs = types.Where(t => t.IsValueType && !t.IsEnum).ToList();
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
                    constants.Add(new(field.Name, AsBits(field.GetRawConstantValue()!)));
                }
                else if (field.IsLiteral && field.FieldType == typeof(string))
                {
                    strings.Add(new(field.Name, (string)field.GetRawConstantValue()!));
                }
            }
        }
        if (includeErrno)
        {
            foreach (Errno errno in Enum.GetValues<Errno>().Where(e => e != Errno.None))
            {
                constants.Add(new(errno.ToString(), (ulong)(long)errno));
            }
        }
        ioctls.Sort((a, b) => string.CompareOrdinal(a.Key, b.Key));
        constants.Sort((a, b) => string.CompareOrdinal(a.Key, b.Key));
        strings.Sort((a, b) => string.CompareOrdinal(a.Key, b.Key));
        return new AbiCatalog(structs, ioctls, constants, strings);
    }

    private static ulong AsBits(object value) => value switch
    {
        ulong u => u,
        uint u => u,
        ushort u => u,
        byte u => u,
        char c => c,
        long s => unchecked((ulong)s),
        int s => unchecked((ulong)(long)s),
        short s => unchecked((ulong)(long)s),
        sbyte s => unchecked((ulong)(long)s),
        _ => throw new NotSupportedException($"constant of type {value.GetType()}"),
    };
}
