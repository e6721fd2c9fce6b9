using Rstmem.Interop.Uapi;

namespace Rstmem.Interop.Abi;

/// <summary>
/// An ioctl request number as the uapi headers define it: direction, type
/// (magic), number and the argument type whose size is encoded. The value is
/// derived from the argument's layout — for this process and, for the ABI
/// proof, for any <see cref="AbiTarget"/> — never typed as a literal.
/// </summary>
public sealed class Ioctl
{
    internal Ioctl(uint direction, uint type, uint number, Type argument, uint hostValue)
    {
        Direction = direction;
        Type = type;
        Number = number;
        Argument = argument;
        Value = hostValue;
    }

    /// <summary>_IOC_NONE, _IOC_WRITE, _IOC_READ or both.</summary>
    public uint Direction { get; }

    /// <summary>The magic: 0xa4 for TEE, 'H' for DMA heaps, 'b' for DMA-BUF.</summary>
    public uint Type { get; }

    /// <summary>The command number within the magic.</summary>
    public uint Number { get; }

    /// <summary>The C type the request's size comes from.</summary>
    public Type Argument { get; }

    /// <summary>The request number on the architecture this process runs on.</summary>
    public uint Value { get; }

    /// <summary>The request number on <paramref name="target"/> (argument size from its C layout rules).</summary>
    public uint ValueFor(AbiTarget target)
    {
        AbiType argument = AbiScalar.ForPrimitive(Argument)
            ?? (AbiType?)AbiCatalog.Current.Find(Argument)
            ?? throw new InvalidOperationException($"the argument of ioctl 0x{Value:X8}, {Argument.Name}, is not a struct of the uapi catalog (src/Interop/Abi/UapiCatalog.cs)");
        return Ioc._IOC(Direction, Type, Number, (uint)argument.SizeOn(target));
    }

    public uint ToUInt32() => Value;

    public static implicit operator uint(Ioctl ioctl)
    {
        ArgumentNullException.ThrowIfNull(ioctl);
        return ioctl.Value;
    }

    public override string ToString() => $"0x{Value:X8}";
}
