using Rstmem.Interop.Uapi;

namespace Rstmem.Interop.Kernel;

/// <summary>How a TEE device is recognised: the one rule shared by the daemon's backend probe and the conformance tester.</summary>
public static class TeeProbe
{
    /// <summary>/dev/teeN (not /dev/teeprivN).</summary>
    public static bool IsTeeNode(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return name.StartsWith("tee", StringComparison.Ordinal) && name.Length > 3 && name[3..].All(char.IsAsciiDigit);
    }

    /// <summary>
    /// Whether TEE_IOC_VERSION claims v4 restricted memory: gen_caps bit 4
    /// (TEE_GEN_CAP_RSTMEM in the v4 series) on a driver that is not QTEE,
    /// where mainline gives the same bit to TEE_GEN_CAP_OBJREF
    /// (include/uapi/linux/tee.h). A claim only: <see cref="V4UseCases(IKernel, SafeFd, in tee_ioctl_version_data)"/>
    /// confirms it with the ioctl itself.
    /// </summary>
    public static bool ClaimsV4Rstmem(in tee_ioctl_version_data version) =>
        (version.gen_caps & Tee.TEE_GEN_CAP_RSTMEM) != 0 && version.impl_id != Tee.TEE_IMPL_ID_QTEE;

    /// <summary>
    /// The use cases a v4 TEE serves: gen_caps bit 4 (TEE_GEN_CAP_RSTMEM),
    /// not QTEE (where mainline gives bit 4 to OBJREF), and a size-0
    /// TEE_IOC_RSTMEM_ALLOC answered with ENOMEM: v4 fails in the pool after
    /// its checks, allocating nothing, while an unknown request gives EINVAL.
    /// Empty when <paramref name="version"/> says it is not v4.
    /// </summary>
    public static IReadOnlyList<UseCase> V4UseCases(IKernel kernel, SafeFd tee, in tee_ioctl_version_data version)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        if (!ClaimsV4Rstmem(version))
        {
            return [];
        }
        var useCases = new List<UseCase>();
        foreach (UseCase useCase in UseCase.All)
        {
            var probe = new tee_ioctl_rstmem_alloc_data { size = 0, use_case = useCase.Id };
            Errno errno = kernel.Ioctl(tee, Tee.TEE_IOC_RSTMEM_ALLOC, ref probe, out int created);
            if (errno == Errno.None)
            {
                SafeFd.DangerousAdopt(created).Dispose(); // a kernel that allocated nothing anyway
            }
            if (errno is Errno.ENOMEM or Errno.None)
            {
                useCases.Add(useCase);
            }
        }
        return useCases;
    }

    /// <summary>TEE_IOC_VERSION then <see cref="V4UseCases(IKernel, SafeFd, in tee_ioctl_version_data)"/>; empty when VERSION fails.</summary>
    public static IReadOnlyList<UseCase> V4UseCases(IKernel kernel, SafeFd tee)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        var version = new tee_ioctl_version_data();
        return kernel.Ioctl(tee, Tee.TEE_IOC_VERSION, ref version, out _) == Errno.None ? V4UseCases(kernel, tee, version) : [];
    }
}
