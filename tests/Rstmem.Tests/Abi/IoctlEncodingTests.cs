using Rstmem.Interop.Abi;
using Rstmem.Interop.Uapi;

namespace Rstmem.Tests.Abi;

/// <summary>
/// Request numbers against literals: the values the _IOR/_IOW/_IOWR macros of
/// include/uapi/linux/tee.h, dma-heap.h and dma-buf.h give on x86-64, arm64 and
/// armhf (and src/Interop/include/rstmem-uapi-ext.h for the unreleased ones).
/// Literals belong only in tests.
/// </summary>
public sealed class IoctlEncodingTests
{
    public static TheoryData<string, uint> KnownValues => new()
    {
        { nameof(Tee.TEE_IOC_VERSION), 0x800CA400 },
        { nameof(Tee.TEE_IOC_SHM_ALLOC), 0xC010A401 },
        { nameof(Tee.TEE_IOC_OPEN_SESSION), 0x8010A402 },
        { nameof(Tee.TEE_IOC_INVOKE), 0x8010A403 },
        { nameof(Tee.TEE_IOC_CANCEL), 0x8008A404 },
        { nameof(Tee.TEE_IOC_CLOSE_SESSION), 0x8004A405 },
        { nameof(Tee.TEE_IOC_SUPPL_RECV), 0x8010A406 },
        { nameof(Tee.TEE_IOC_SUPPL_SEND), 0x8010A407 },
        { nameof(Tee.TEE_IOC_SHM_REGISTER_FD), 0xC018A408 },
        { nameof(Tee.TEE_IOC_SHM_REGISTER_FD_V1), 0xC020A408 },
        { nameof(Tee.TEE_IOC_SHM_REGISTER), 0xC018A409 },
        { nameof(Tee.TEE_IOC_RSTMEM_ALLOC), 0xC018A40A },
        { nameof(Tee.TEE_IOC_OBJECT_INVOKE), 0x8010A40A },
        { nameof(DmaHeap.DMA_HEAP_IOCTL_ALLOC), 0xC0184800 },
        { nameof(DmaBuf.DMA_BUF_IOCTL_SYNC), 0x40086200 },
        { nameof(DmaBuf.DMA_BUF_SET_NAME_A), 0x40046201 },
        { nameof(DmaBuf.DMA_BUF_SET_NAME_B), 0x40086201 },
    };

    [Theory]
    [MemberData(nameof(KnownValues))]
    public void Request_numbers_match_the_reference(string name, uint expected)
    {
        Ioctl ioctl = AbiCatalog.Current.Ioctls.Single(i => i.Key == name).Value;
        Assert.Equal(expected, ioctl.Value);
        Assert.Equal(expected, ioctl.ValueFor(AbiTarget.Aarch64));
        Assert.Equal(expected, ioctl.ValueFor(AbiTarget.Arm));
    }

    [Fact]
    public void Only_the_argument_size_changes_on_i386_and_32_bit_arm()
    {
        // tee_ioctl_rstmem_alloc_data ends in a u32 after a u64: 24 bytes with 8-byte u64 alignment, 20 on i386.
        Assert.Equal(0xC014A40Au, Tee.TEE_IOC_RSTMEM_ALLOC.ValueFor(AbiTarget.I386));
        // DMA_BUF_SET_NAME is _IOW('b', 1, const char *): A on 32-bit, B on 64-bit.
        Assert.Equal(DmaBuf.DMA_BUF_SET_NAME_A.Value, DmaBuf.DMA_BUF_SET_NAME.ValueFor(AbiTarget.Arm));
        Assert.Equal(DmaBuf.DMA_BUF_SET_NAME_B.Value, DmaBuf.DMA_BUF_SET_NAME.ValueFor(AbiTarget.Aarch64));
    }

    [Fact]
    public void Decoding_returns_the_fields_encoding_took()
    {
        uint request = DmaHeap.DMA_HEAP_IOCTL_ALLOC;
        Assert.Equal(Ioc._IOC_READ | Ioc._IOC_WRITE, Ioc._IOC_DIR(request));
        Assert.Equal((uint)'H', Ioc._IOC_TYPE(request));
        Assert.Equal(0u, Ioc._IOC_NR(request));
        Assert.Equal(24u, Ioc._IOC_SIZE(request));
        Assert.Equal(10u, Ioc._IOC_NR(Tee.TEE_IOC_RSTMEM_ALLOC));
        Assert.Equal(Ioc._IOC_NR(Tee.TEE_IOC_RSTMEM_ALLOC), Ioc._IOC_NR(Tee.TEE_IOC_OBJECT_INVOKE));
        Assert.NotEqual(Tee.TEE_IOC_RSTMEM_ALLOC.Value, Tee.TEE_IOC_OBJECT_INVOKE.Value);
    }

    [Fact]
    public void An_argument_too_large_for_the_size_field_is_refused()
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => Ioc._IOC(Ioc._IOC_READ, 0xa4, 0, 1u << 14));
        Assert.Equal("size", error.ParamName);
    }
}
