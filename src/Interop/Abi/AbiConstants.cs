using System.Runtime.CompilerServices;

namespace Rstmem.Interop.Abi;

/// <summary>
/// Collects integral constants for a catalog without reflection: each is
/// named once, by the expression that reads it (<c>Add(Tee.TEE_GEN_CAP_GP)</c>
/// is "TEE_GEN_CAP_GP"), and kept as a 64-bit pattern.
/// </summary>
internal sealed class AbiConstants
{
    private readonly List<KeyValuePair<string, ulong>> constants = [];

    public IReadOnlyList<KeyValuePair<string, ulong>> All => constants;

    /// <summary>A signed (or 32-bit unsigned) constant, sign- or zero-extended as C's cast to unsigned long long does.</summary>
    public AbiConstants Add(long value, [CallerArgumentExpression(nameof(value))] string expression = "") =>
        Add(expression, unchecked((ulong)value));

    public AbiConstants Add(ulong value, [CallerArgumentExpression(nameof(value))] string expression = "") =>
        Add(expression, value);

    private AbiConstants Add(string expression, ulong bits)
    {
        string name = expression[(expression.LastIndexOf('.') + 1)..];
        if (name.Length == 0 || !name.All(c => char.IsAsciiLetterOrDigit(c) || c == '_'))
        {
            throw new ArgumentException($"'{expression}' does not name one constant; expected Class.NAME", nameof(expression));
        }
        if (constants.Any(c => c.Key == name))
        {
            throw new ArgumentException($"constant '{name}' is declared twice", nameof(expression));
        }
        constants.Add(new(name, bits));
        return this;
    }

    /// <summary>Every <see cref="Errno"/> but None, named as in &lt;errno.h&gt;.</summary>
    public static IEnumerable<KeyValuePair<string, ulong>> Errnos() =>
        Enum.GetValues<Errno>().Where(e => e != Errno.None).Select(e => new KeyValuePair<string, ulong>(e.ToString(), (ulong)(long)e));

    /// <summary>A boxed constant (from reflection) as a 64-bit pattern, signed values sign-extended.</summary>
    public static ulong AsBits(object value) => value switch
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
