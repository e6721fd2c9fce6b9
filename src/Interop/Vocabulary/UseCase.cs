using Rstmem.Interop.Uapi;

namespace Rstmem.Interop;

/// <summary>
/// The three restricted-memory use cases. The numbers are the v4 uapi's
/// TEE_IOC_UC_* and mainline's kernel-internal enum tee_dma_heap_id; the
/// names are the heap-name suffixes of drivers/tee/tee_heap.c. The short
/// name starts the default name rstmemd gives a buffer of that use case
/// ("svp:&lt;pid&gt;:&lt;n&gt;"), visible in fdinfo and debugfs.
/// </summary>
public sealed record UseCase(uint Id, string Name, string ShortName)
{
    public static readonly UseCase SecureVideoPlay = new(Tee.TEE_IOC_UC_SECURE_VIDEO_PLAY, "secure-video", "svp");
    public static readonly UseCase TrustedUi = new(Tee.TEE_IOC_UC_TRUSTED_UI, "trusted-ui", "tui");
    public static readonly UseCase SecureVideoRecord = new(Tee.TEE_IOC_UC_SECURE_VIDEO_RECORD, "secure-video-record", "svr");

    public static IReadOnlyList<UseCase> All { get; } = [SecureVideoPlay, TrustedUi, SecureVideoRecord];

    public static UseCase? ByName(string name) => All.FirstOrDefault(u => u.Name == name);

    public static UseCase? ById(uint id) => All.FirstOrDefault(u => u.Id == id);

    public override string ToString() => Name;
}
