using System.Diagnostics.CodeAnalysis;
using System.Reflection;

namespace Rstmem.Interop.Abi;

/// <summary>Everything kernel- and libc-facing that rstmemd declares, described for one architecture.</summary>
public sealed record AbiDescription(
    string Arch,
    IReadOnlyDictionary<string, uint> Ioctls,
    IReadOnlyDictionary<string, StructLayoutDescription> Structs,
    IReadOnlyDictionary<string, ulong> Constants);

/// <summary>
/// An inventory of an ABI: structs with their fields, ioctl request numbers
/// and constants. <see cref="Current"/> is the kernel and libc ABI, declared
/// explicitly in <see cref="UapiCatalog"/> so that a NativeAOT build needs no
/// reflection; the ABI test compiles C against the real headers for each
/// entry, and another checks by reflection that nothing in the uapi namespace
/// is missing from it.
/// </summary>
public sealed class AbiCatalog
{
    private readonly Dictionary<Type, AbiStruct> byType;

    internal AbiCatalog(
        IReadOnlyList<AbiStruct> structs,
        IReadOnlyList<KeyValuePair<string, Ioctl>> ioctls,
        IReadOnlyList<KeyValuePair<string, ulong>> constants,
        IReadOnlyList<KeyValuePair<string, string>> strings)
    {
        Declarations = structs.OrderBy(s => s.Name, StringComparer.Ordinal).ToArray();
        byType = Declarations.ToDictionary(s => s.ClrType);
        Structs = Declarations.Select(s => s.ClrType).ToArray();
        Ioctls = ioctls.OrderBy(i => i.Key, StringComparer.Ordinal).ToArray();
        Constants = constants.OrderBy(c => c.Key, StringComparer.Ordinal).ToArray();
        StringConstants = strings.OrderBy(s => s.Key, StringComparer.Ordinal).ToArray();
    }

    /// <summary>The kernel and libc ABI: everything in Rstmem.Interop.Uapi, plus errno.</summary>
    public static AbiCatalog Current { get; } = UapiCatalog.Create();

    /// <summary>The structs, by C name.</summary>
    public IReadOnlyList<AbiStruct> Declarations { get; }

    /// <summary>The C# types of <see cref="Declarations"/>.</summary>
    public IReadOnlyList<Type> Structs { get; }

    public IReadOnlyList<KeyValuePair<string, Ioctl>> Ioctls { get; }

    /// <summary>Integral constants as 64-bit patterns (signed values sign-extended, as C's cast to unsigned long long does).</summary>
    public IReadOnlyList<KeyValuePair<string, ulong>> Constants { get; }

    /// <summary>String constants (C string literal macros).</summary>
    public IReadOnlyList<KeyValuePair<string, string>> StringConstants { get; }

    /// <summary>The declaration of <paramref name="type"/>, or null when this catalog has none.</summary>
    public AbiStruct? Find(Type type) => byType.GetValueOrDefault(type);

    /// <summary>What the C# definitions give on <paramref name="target"/> under its C layout rules.</summary>
    public AbiDescription Describe(AbiTarget target) => new(
        target.Name,
        Ioctls.ToDictionary(i => i.Key, i => i.Value.ValueFor(target)),
        Declarations.ToDictionary(s => s.Name, s => CLayout.Of(s, target)),
        Constants.ToDictionary(c => c.Key, c => c.Value));

    /// <summary>What this process actually uses: sizes and offsets from the runtime, request values as computed at startup.</summary>
    public AbiDescription DescribeRuntime() => new(
        AbiTarget.Host.Name,
        Ioctls.ToDictionary(i => i.Key, i => i.Value.Value),
        Declarations.ToDictionary(s => s.Name, s => s.RuntimeLayout()),
        Constants.ToDictionary(c => c.Key, c => c.Value));

    /// <summary>
    /// The catalog of one namespace found by reflection: its structs, and the
    /// <see cref="Ioctl"/> fields and constants of its static classes — for a
    /// wire protocol defined by a C header, or to check <see cref="Current"/>.
    /// </summary>
    [RequiresUnreferencedCode("Finds types, fields and constants by reflection.")]
    [RequiresDynamicCode("Measures the runtime layout with generated code.")]
    public static AbiCatalog ForNamespace(Assembly assembly, string ns, bool includeErrno = false) =>
        AbiReflection.Catalog(assembly, ns, includeErrno);
}
