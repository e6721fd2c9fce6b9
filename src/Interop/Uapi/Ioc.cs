using Rstmem.Interop.Abi;

namespace Rstmem.Interop.Uapi;

/// <summary>
/// The ioctl number encoding of include/uapi/asm-generic/ioctl.h, used by
/// x86, arm and arm64 alike: nr in bits 0-7, type in 8-15, argument size in
/// 16-29, direction in 30-31.
/// </summary>
public static class Ioc
{
    public const int _IOC_NRBITS = 8;
    public const int _IOC_TYPEBITS = 8;
    public const int _IOC_SIZEBITS = 14;
    public const int _IOC_DIRBITS = 2;

    public const int _IOC_NRSHIFT = 0;
    public const int _IOC_TYPESHIFT = _IOC_NRSHIFT + _IOC_NRBITS;
    public const int _IOC_SIZESHIFT = _IOC_TYPESHIFT + _IOC_TYPEBITS;
    public const int _IOC_DIRSHIFT = _IOC_SIZESHIFT + _IOC_SIZEBITS;

    public const uint _IOC_NONE = 0;
    public const uint _IOC_WRITE = 1;
    public const uint _IOC_READ = 2;

    public static uint _IOC(uint dir, uint type, uint nr, uint size)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(size, 1u << _IOC_SIZEBITS);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(type, 1u << _IOC_TYPEBITS);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(nr, 1u << _IOC_NRBITS);
        return (dir << _IOC_DIRSHIFT) | (type << _IOC_TYPESHIFT) | (nr << _IOC_NRSHIFT) | (size << _IOC_SIZESHIFT);
    }

    public static uint _IOC_DIR(uint request) => (request >> _IOC_DIRSHIFT) & ((1u << _IOC_DIRBITS) - 1);

    public static uint _IOC_TYPE(uint request) => (request >> _IOC_TYPESHIFT) & ((1u << _IOC_TYPEBITS) - 1);

    public static uint _IOC_NR(uint request) => (request >> _IOC_NRSHIFT) & ((1u << _IOC_NRBITS) - 1);

    public static uint _IOC_SIZE(uint request) => (request >> _IOC_SIZESHIFT) & ((1u << _IOC_SIZEBITS) - 1);

    public static Ioctl _IOR<T>(uint type, uint nr) where T : unmanaged => Make<T>(_IOC_READ, type, nr);

    public static Ioctl _IOW<T>(uint type, uint nr) where T : unmanaged => Make<T>(_IOC_WRITE, type, nr);

    public static Ioctl _IOWR<T>(uint type, uint nr) where T : unmanaged => Make<T>(_IOC_READ | _IOC_WRITE, type, nr);

    private static unsafe Ioctl Make<T>(uint dir, uint type, uint nr) where T : unmanaged =>
        new(dir, type, nr, typeof(T), _IOC(dir, type, nr, (uint)sizeof(T)));
}
