using System.Runtime.CompilerServices;

namespace Rstmem.Interop.Abi;

/// <summary>A C type as the layout rules see it: a scalar of fixed width, a pointer, or a struct.</summary>
public abstract class AbiType
{
    private protected AbiType()
    {
    }

    public abstract string Name { get; }

    public abstract int SizeOn(AbiTarget target);

    public abstract int AlignmentOn(AbiTarget target);
}

/// <summary>
/// An integer of 1, 2, 4 or 8 bytes, or a pointer (and <c>size_t</c>, <c>long</c>),
/// whose width is the target's. 64-bit integers are aligned as the target's C ABI says.
/// </summary>
public sealed class AbiScalar : AbiType
{
    private readonly int size;

    private AbiScalar(string name, int size)
    {
        Name = name;
        this.size = size;
    }

    public static readonly AbiScalar Bits8 = new("8-bit integer", 1);
    public static readonly AbiScalar Bits16 = new("16-bit integer", 2);
    public static readonly AbiScalar Bits32 = new("32-bit integer", 4);
    public static readonly AbiScalar Bits64 = new("64-bit integer", 8);

    /// <summary>A pointer, <c>size_t</c> or <c>long</c>: the width of the target's pointers.</summary>
    public static readonly AbiScalar PointerSized = new("pointer", 0);

    public override string Name { get; }

    public override int SizeOn(AbiTarget target)
    {
        ArgumentNullException.ThrowIfNull(target);
        return this == PointerSized ? target.PointerSize : size;
    }

    public override int AlignmentOn(AbiTarget target)
    {
        ArgumentNullException.ThrowIfNull(target);
        return this == PointerSized ? target.PointerSize : this == Bits64 ? target.Int64Alignment : size;
    }

    /// <summary>The scalar a C# primitive stands for (nint and nuint are pointer-wide); null for anything else.</summary>
    public static AbiScalar? ForPrimitive(Type type)
    {
        ArgumentNullException.ThrowIfNull(type);
        if (type.IsPointer || type == typeof(nint) || type == typeof(nuint))
        {
            return PointerSized;
        }
        return Type.GetTypeCode(type) switch
        {
            TypeCode.Byte or TypeCode.SByte or TypeCode.Boolean => Bits8,
            TypeCode.Int16 or TypeCode.UInt16 or TypeCode.Char => Bits16,
            TypeCode.Int32 or TypeCode.UInt32 => Bits32,
            TypeCode.Int64 or TypeCode.UInt64 => Bits64,
            _ => null,
        };
    }
}

/// <summary>
/// One field of a struct: its C type, its element count (more than 1 for a
/// fixed-size array such as <c>__u8 uuid[16]</c>), and its offset as this
/// process's runtime laid it out.
/// </summary>
public sealed record AbiField(string Name, AbiType Type, int Length, int RuntimeOffset);

/// <summary>A C flexible array member (<c>struct tee_ioctl_param params[]</c>): no C# field, but an offset and an alignment.</summary>
public sealed record AbiFlexibleArray(string Name, AbiType Element);

/// <summary>
/// A uapi struct: its C# type, its fields in declaration order with their C
/// types, a trailing flexible array member if it has one, and the size this
/// process's runtime gives it.
/// </summary>
public sealed class AbiStruct : AbiType
{
    internal AbiStruct(Type clrType, IReadOnlyList<AbiField> fields, AbiFlexibleArray? flexible, int runtimeSize)
    {
        ClrType = clrType;
        Fields = fields;
        Flexible = flexible;
        RuntimeSize = runtimeSize;
    }

    public Type ClrType { get; }

    /// <summary>The C name (the C# type is named exactly as in the header).</summary>
    public override string Name => ClrType.Name;

    public IReadOnlyList<AbiField> Fields { get; }

    public AbiFlexibleArray? Flexible { get; }

    public int RuntimeSize { get; }

    public override int SizeOn(AbiTarget target) => CLayout.Of(this, target).Size;

    public override int AlignmentOn(AbiTarget target) => CLayout.Of(this, target).Alignment;

    /// <summary>
    /// The layout this process uses: the runtime's size and field offsets
    /// (measured, not computed). A flexible array member has no C# field; its
    /// offset is the C rule's.
    /// </summary>
    public StructLayoutDescription RuntimeLayout()
    {
        StructLayoutDescription host = CLayout.Of(this, AbiTarget.Host);
        var offsets = Fields.Select(f => new KeyValuePair<string, int>(f.Name, f.RuntimeOffset)).ToList();
        if (Flexible is not null)
        {
            offsets.Add(host.Offsets.Single(o => o.Key == Flexible.Name));
        }
        return new StructLayoutDescription(RuntimeSize, host.Alignment, offsets);
    }

    /// <summary>The runtime offset of <paramref name="field"/>.</summary>
    public int RuntimeOffsetOf(string field) =>
        Fields.FirstOrDefault(f => f.Name == field)?.RuntimeOffset
        ?? throw new ArgumentException($"struct {Name} has no field '{field}'; its fields are {string.Join(", ", Fields.Select(f => f.Name))}", nameof(field));

    public override string ToString() => $"struct {Name}";
}

/// <summary>Returns a reference to one field of <typeparamref name="T"/>: <c>static (ref s) => ref s.len</c>.</summary>
public delegate ref TField FieldRef<T, TField>(ref T value);

/// <summary>Returns the address of one field of <typeparamref name="T"/>: <c>static s => &amp;s->msg_name</c> (for pointer-typed fields).</summary>
public unsafe delegate void* FieldAddress<T>(T* value) where T : unmanaged;

/// <summary>
/// Declares a struct field by field, without reflection: each field is
/// named once, by the accessor that reaches it (the name is the accessor's
/// text after the last <c>.</c> or <c>-&gt;</c>), its C type comes from the
/// accessor's C# type, and its offset is measured on a real instance.
/// </summary>
internal sealed class AbiStructBuilder<T> where T : unmanaged
{
    private readonly Func<Type, AbiType> resolve;
    private readonly List<AbiField> fields = [];
    private AbiFlexibleArray? flexible;

    public AbiStructBuilder(Func<Type, AbiType> resolve) => this.resolve = resolve;

    /// <summary>A field of a primitive or an already declared struct type.</summary>
    public AbiStructBuilder<T> Field<TField>(FieldRef<T, TField> field, [CallerArgumentExpression(nameof(field))] string expression = "")
        where TField : unmanaged =>
        Add(expression, resolve(typeof(TField)), 1, Measure(field));

    /// <summary>A fixed-size array (<c>fixed byte uuid[16]</c>), reached through its first element: <c>static (ref s) => ref s.uuid[0]</c>.</summary>
    public AbiStructBuilder<T> Array<TElement>(FieldRef<T, TElement> firstElement, int length, [CallerArgumentExpression(nameof(firstElement))] string expression = "")
        where TElement : unmanaged
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        return Add(expression, resolve(typeof(TElement)), length, Measure(firstElement));
    }

    /// <summary>A pointer-typed field, which a <see cref="FieldRef{T, TField}"/> cannot return: <c>static s => &amp;s->iov_base</c>.</summary>
    public unsafe AbiStructBuilder<T> Pointer(FieldAddress<T> field, [CallerArgumentExpression(nameof(field))] string expression = "")
    {
        ArgumentNullException.ThrowIfNull(field);
        T value = default;
        T* start = &value;
        return Add(expression, AbiScalar.PointerSized, 1, checked((int)((byte*)field(start) - (byte*)start)));
    }

    /// <summary>The trailing flexible array member, which C# cannot declare.</summary>
    public AbiStructBuilder<T> FlexibleArray<TElement>(string name) where TElement : unmanaged
    {
        flexible = new AbiFlexibleArray(name, resolve(typeof(TElement)));
        return this;
    }

    public AbiStruct Build() => new(typeof(T), fields.ToArray(), flexible, Unsafe.SizeOf<T>());

    private static int Measure<TField>(FieldRef<T, TField> field)
    {
        ArgumentNullException.ThrowIfNull(field);
        T value = default;
        ref byte start = ref Unsafe.As<T, byte>(ref value);
        ref byte at = ref Unsafe.As<TField, byte>(ref field(ref value));
        return checked((int)Unsafe.ByteOffset(ref start, ref at));
    }

    private AbiStructBuilder<T> Add(string expression, AbiType type, int length, int offset)
    {
        string name = FieldName(expression);
        if (fields.Any(f => f.Name == name))
        {
            throw new ArgumentException($"struct {typeof(T).Name}: field '{name}' is declared twice", nameof(expression));
        }
        fields.Add(new AbiField(name, type, length, offset));
        return this;
    }

    /// <summary>"static (ref s) => ref s.uuid[0]" → "uuid"; "static s => &amp;s->msg_name" → "msg_name".</summary>
    internal static string FieldName(string expression)
    {
        int arrow = expression.LastIndexOf("=>", StringComparison.Ordinal);
        string body = expression[(arrow + 2)..].Trim();
        if (body.EndsWith("[0]", StringComparison.Ordinal))
        {
            body = body[..^3];
        }
        int start = body.Length;
        while (start > 0 && (char.IsAsciiLetterOrDigit(body[start - 1]) || body[start - 1] == '_'))
        {
            start--;
        }
        if (arrow < 0 || start == 0 || start == body.Length || body[start - 1] is not ('.' or '>'))
        {
            throw new ArgumentException(
                $"'{expression}' does not name one field; expected an accessor such as static (ref s) => ref s.len or static s => &s->msg_name",
                nameof(expression));
        }
        return body[start..];
    }
}
