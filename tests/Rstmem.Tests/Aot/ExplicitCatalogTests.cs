using Rstmem.Interop;
using Rstmem.Interop.Abi;
using Rstmem.Interop.Uapi;
using Rstmem.Tests.Abi;

namespace Rstmem.Tests.Aot;

/// <summary>
/// The uapi catalog is declared by hand (src/Interop/Abi/UapiCatalog.cs) so
/// the NativeAOT rstmemd needs no reflection. Here reflection, which the JIT
/// has, finds the same catalog from the C# declarations themselves; the two
/// must agree on every struct, field, array length, flexible array member,
/// runtime offset, ioctl and constant, so nothing added to the uapi can
/// escape the ABI proof by being left out of the list.
/// </summary>
public sealed unsafe class ExplicitCatalogTests
{
    private static readonly AbiCatalog Declared = AbiCatalog.Current;
    private static readonly AbiCatalog Reflected = AbiCatalog.ForNamespace(typeof(Tee).Assembly, typeof(Tee).Namespace!, includeErrno: true);

    [Fact]
    public void The_declared_catalog_is_the_one_reflection_finds()
    {
        List<string> differences = Compare(Declared, Reflected);

        Assert.True(differences.Count == 0, $"{differences.Count} differences between UapiCatalog and the uapi namespace:\n" + string.Join('\n', differences));
        // Reflection really looked: an empty namespace would agree with anything.
        Assert.Contains(typeof(dma_heap_allocation_data), Reflected.Structs);
        Assert.Contains(Reflected.Ioctls, i => i.Key == nameof(Tee.TEE_IOC_VERSION));
        Assert.Contains(Reflected.Constants, c => c.Key == nameof(Errno.ENOMEM));
    }

    [Fact]
    public void Declared_offsets_are_measured_on_the_runtime_layout()
    {
        // The declared catalog measures through accessors, reflection through ldflda: same bytes.
        List<string> differences = CProbe.Differences(Reflected.DescribeRuntime(), Declared.DescribeRuntime());

        Assert.True(differences.Count == 0, string.Join('\n', differences));
        Assert.Equal(8, FieldOffset.Of<dma_heap_allocation_data>(nameof(dma_heap_allocation_data.fd)));
        Assert.Equal(16, FieldOffset.Of<tee_ioctl_rstmem_alloc_data>(nameof(tee_ioctl_rstmem_alloc_data.id)));
        // The offsets the model and the suites use, read from the declarations without the catalog, agree with it.
        Assert.Equal(FieldOffset.Of<dma_heap_allocation_data>(nameof(dma_heap_allocation_data.fd)), dma_heap_allocation_data.FdOffset);
        Assert.Equal(FieldOffset.Of<tee_ioctl_rstmem_alloc_data>(nameof(tee_ioctl_rstmem_alloc_data.id)), tee_ioctl_rstmem_alloc_data.IdOffset);
    }

    [Fact]
    public void A_struct_field_length_or_constant_left_out_or_wrong_is_reported()
    {
        // The comparison must see each way a hand-written list can go wrong.
        AbiStruct heap = Declared.Find(typeof(dma_heap_allocation_data))!;
        AbiStruct shortHeap = new AbiStructBuilder<dma_heap_allocation_data>(Resolve)
            .Field(static (ref v) => ref v.len)
            .Field(static (ref v) => ref v.fd)
            .Field(static (ref v) => ref v.heap_flags)
            .Build();
        AbiStruct shortUuid = new AbiStructBuilder<tee_ioctl_open_session_arg>(Resolve)
            .Array(static (ref v) => ref v.uuid[0], 8)
            .Array(static (ref v) => ref v.clnt_uuid[0], Tee.TEE_IOCTL_UUID_LEN)
            .Field(static (ref v) => ref v.clnt_login)
            .Field(static (ref v) => ref v.cancel_id)
            .Field(static (ref v) => ref v.session)
            .Field(static (ref v) => ref v.ret)
            .Field(static (ref v) => ref v.ret_origin)
            .Field(static (ref v) => ref v.num_params)
            .FlexibleArray<tee_ioctl_param>("params")
            .Build();
        var structs = Declared.Declarations
            .Where(s => s.ClrType != typeof(dma_buf_sync))
            .Select(s => s == heap ? shortHeap : s.ClrType == typeof(tee_ioctl_open_session_arg) ? shortUuid : s)
            .ToList();
        var wrong = new AbiCatalog(
            structs,
            Declared.Ioctls.Where(i => i.Key != nameof(Tee.TEE_IOC_CANCEL)).ToList(),
            Declared.Constants.Where(c => c.Key != nameof(Inotify.IN_IGNORED)).ToList(),
            []);

        List<string> differences = Compare(wrong, Reflected);

        Assert.Contains("struct dma_buf_sync: in the uapi namespace, not declared", differences);
        Assert.Contains(differences, d => d.StartsWith("struct dma_heap_allocation_data: fields declared [len, fd, heap_flags], in C# [len, fd, fd_flags, heap_flags]", StringComparison.Ordinal));
        Assert.Contains(differences, d => d.StartsWith("struct tee_ioctl_open_session_arg.uuid: declared 8 x 8-bit integer at 0, in C# 16 x 8-bit integer at 0", StringComparison.Ordinal));
        Assert.Contains("ioctl TEE_IOC_CANCEL: in the uapi namespace, not declared", differences);
        Assert.Contains("constant IN_IGNORED: in the uapi namespace, not declared", differences);
    }

    [Theory]
    [InlineData("static (ref v) => ref v.len", "len")]
    [InlineData("static (ref v) => ref v.uuid[0]", "uuid")]
    [InlineData("static v => &v->msg_name", "msg_name")]
    [InlineData("static (ref v) => ref v.__spare3[0]", "__spare3")]
    public void A_field_is_named_by_its_accessor(string accessor, string name) =>
        Assert.Equal(name, AbiStructBuilder<statx>.FieldName(accessor));

    [Theory]
    [InlineData("static (ref v) => ref v")]
    [InlineData("static (ref v) => ref v.len + 1")]
    [InlineData("GetField()")]
    public void An_accessor_that_names_no_field_is_refused(string accessor)
    {
        var error = Assert.Throws<ArgumentException>(() => AbiStructBuilder<statx>.FieldName(accessor));
        Assert.Contains($"'{accessor}' does not name one field", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_field_declared_twice_is_refused()
    {
        var error = Assert.Throws<ArgumentException>(() => new AbiStructBuilder<dma_buf_sync>(Resolve)
            .Field(static (ref v) => ref v.flags)
            .Field(static (ref v) => ref v.flags));
        Assert.Contains("struct dma_buf_sync: field 'flags' is declared twice", error.Message, StringComparison.Ordinal);
    }

    private static AbiType Resolve(Type type) => AbiScalar.ForPrimitive(type) ?? (AbiType)Declared.Find(type)!;

    /// <summary>Every way <paramref name="declared"/> differs from <paramref name="reflected"/>, one line each.</summary>
    private static List<string> Compare(AbiCatalog declared, AbiCatalog reflected)
    {
        var differences = new List<string>();
        foreach (AbiStruct truth in reflected.Declarations)
        {
            if (declared.Find(truth.ClrType) is not { } mine)
            {
                differences.Add($"struct {truth.Name}: in the uapi namespace, not declared");
                continue;
            }
            string[] mineNames = mine.Fields.Select(f => f.Name).ToArray();
            string[] truthNames = truth.Fields.Select(f => f.Name).ToArray();
            if (!mineNames.SequenceEqual(truthNames))
            {
                differences.Add($"struct {truth.Name}: fields declared [{string.Join(", ", mineNames)}], in C# [{string.Join(", ", truthNames)}]");
                continue;
            }
            foreach (var (m, t) in mine.Fields.Zip(truth.Fields))
            {
                if (m.Length != t.Length || m.Type.Name != t.Type.Name || m.RuntimeOffset != t.RuntimeOffset)
                {
                    differences.Add($"struct {truth.Name}.{t.Name}: declared {m.Length} x {m.Type.Name} at {m.RuntimeOffset}, in C# {t.Length} x {t.Type.Name} at {t.RuntimeOffset}");
                }
            }
            if (mine.Flexible?.Name != truth.Flexible?.Name || mine.Flexible?.Element.Name != truth.Flexible?.Element.Name)
            {
                differences.Add($"struct {truth.Name}: flexible array declared {mine.Flexible}, in C# {truth.Flexible}");
            }
            foreach (AbiTarget target in AbiTarget.All)
            {
                StructLayoutDescription a = CLayout.Of(mine, target), b = CLayout.Of(truth, target);
                if (a.Size != b.Size || a.Alignment != b.Alignment || !a.Offsets.SequenceEqual(b.Offsets))
                {
                    differences.Add($"struct {truth.Name} on {target.Name}: declared size {a.Size} align {a.Alignment}, in C# size {b.Size} align {b.Alignment}");
                }
            }
            if (mine.RuntimeSize != truth.RuntimeSize)
            {
                differences.Add($"struct {truth.Name}: declared runtime size {mine.RuntimeSize}, in C# {truth.RuntimeSize}");
            }
        }
        differences.AddRange(declared.Structs.Except(reflected.Structs).Select(t => $"struct {t.Name}: declared, not in the uapi namespace"));

        var declaredIoctls = declared.Ioctls.ToDictionary();
        foreach (var (name, ioctl) in reflected.Ioctls)
        {
            if (!declaredIoctls.TryGetValue(name, out Ioctl? mine))
            {
                differences.Add($"ioctl {name}: in the uapi namespace, not declared");
            }
            else if (!ReferenceEquals(mine, ioctl))
            {
                differences.Add($"ioctl {name}: declared as a different request ({mine})");
            }
        }
        differences.AddRange(declaredIoctls.Keys.Except(reflected.Ioctls.Select(i => i.Key)).Select(n => $"ioctl {n}: declared, not in the uapi namespace"));

        var declaredConstants = declared.Constants.ToDictionary();
        foreach (var (name, value) in reflected.Constants)
        {
            if (!declaredConstants.TryGetValue(name, out ulong mine))
            {
                differences.Add($"constant {name}: in the uapi namespace, not declared");
            }
            else if (mine != value)
            {
                differences.Add($"constant {name}: declared 0x{mine:X}, in C# 0x{value:X}");
            }
        }
        differences.AddRange(declaredConstants.Keys.Except(reflected.Constants.Select(c => c.Key)).Select(n => $"constant {n}: declared, not in the uapi namespace"));
        // String constants of the uapi classes (DmaHeap.Directory) are paths the daemon uses, not header
        // macros the C probe could print: the declared catalog has none, and reflection's are not compared.
        if (declared.StringConstants.Count != 0)
        {
            differences.Add($"string constants declared: {string.Join(", ", declared.StringConstants.Select(s => s.Key))}; no uapi header defines one");
        }
        return differences;
    }
}
