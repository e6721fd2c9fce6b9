using System.Runtime.InteropServices;

namespace Rstmem.Interop.Abi;

/// <summary>
/// The C layout rules of one architecture, as far as the uapi structs care:
/// pointer width and the alignment of 64-bit integers (8 on x86-64, arm64 and
/// ARM EABI; 4 on i386, which is why TEE_IOC_RSTMEM_ALLOC differs there).
/// </summary>
public sealed record AbiTarget(string Name, int PointerSize, int Int64Alignment)
{
    public static readonly AbiTarget X64 = new("x86_64", 8, 8);
    public static readonly AbiTarget Aarch64 = new("aarch64", 8, 8);
    public static readonly AbiTarget Arm = new("arm", 4, 8);
    public static readonly AbiTarget I386 = new("i386", 4, 4);

    public static IReadOnlyList<AbiTarget> All { get; } = [X64, Aarch64, Arm, I386];

    /// <summary>The architecture this process runs on.</summary>
    public static AbiTarget Host { get; } = RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.X64 => X64,
        Architecture.Arm64 => Aarch64,
        Architecture.Arm or Architecture.Armv6 => Arm,
        Architecture.X86 => I386,
        var other => throw new PlatformNotSupportedException($"rstmemd knows no C layout rules for {other}"),
    };

    public static AbiTarget Parse(string name) =>
        All.FirstOrDefault(t => t.Name == name)
        ?? throw new ArgumentException(
            $"unknown architecture '{name}': expected one of {string.Join(", ", All.Select(t => t.Name))}", nameof(name));
}
