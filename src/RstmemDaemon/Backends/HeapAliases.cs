using Rstmem.Interop;
using Rstmem.Model;

namespace Rstmem.Daemon.Backends;

/// <summary>
/// Vendor secure heaps and the use case each one serves. Configuration
/// (Heaps:Aliases) adds to or overrides this table.
/// </summary>
public static class HeapAliases
{
    public static IReadOnlyDictionary<string, string> BuiltIn { get; } = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["secure_video"] = UseCase.SecureVideoPlay.Name,     // MediaTek-style vendor trees
        ["vframe-secure"] = UseCase.SecureVideoPlay.Name,    // Amlogic
        ["sdp"] = UseCase.SecureVideoPlay.Name,              // OP-TEE SDP out-of-tree heap
        ["secure_ui"] = UseCase.TrustedUi.Name,
    };
}
