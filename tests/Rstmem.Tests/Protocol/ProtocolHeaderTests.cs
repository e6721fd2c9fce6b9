using Rstmem.Daemon.Protocol;
using Rstmem.Interop.Abi;
using Rstmem.Tests.Abi;
using Rstmem.Tests.Support;

namespace Rstmem.Tests.Protocol;

/// <summary>
/// The C# protocol definitions against src/Native/include/rstmem/protocol.h,
/// the source of truth: every struct, field offset and constant, compiled
/// as C for x86_64, aarch64 and armhf.
/// </summary>
public sealed class ProtocolHeaderTests
{
    private static readonly AbiCatalog Catalog = AbiCatalog.ForNamespace(typeof(RstmemProtocol).Assembly, typeof(RstmemProtocol).Namespace!);
    private static readonly string[] Headers = ["<stdint.h>", "\"rstmem/protocol.h\""];
    private static string IncludeDir => Path.Combine(RepoPaths.Root, "src", "Native", "include");

    [Theory]
    [InlineData("x86_64")]
    [InlineData("aarch64")]
    [InlineData("arm")]
    public void The_CSharp_protocol_matches_protocol_h_on(string arch)
    {
        Toolchain toolchain = Toolchain.ByName(arch);
        AbiDescription fromC = CProbe.Run(Catalog, toolchain, Headers, IncludeDir, out IReadOnlyDictionary<string, string> strings);

        List<string> differences = CProbe.Differences(fromC, Catalog.Describe(toolchain.Target));

        Assert.True(differences.Count == 0, string.Join('\n', differences));
        Assert.Equal(Catalog.StringConstants.ToDictionary(), strings);
        Assert.True(Catalog.Structs.Count >= 12, "every protocol struct is in the catalog");
    }

    [Fact]
    public void Every_protocol_struct_has_the_same_layout_on_32_and_64_bit()
    {
        // Fixed widths and explicit padding: a 32-bit client and a 64-bit daemon agree.
        foreach (Type type in Catalog.Structs)
        {
            Assert.Equal(CLayout.Of(type, AbiTarget.X64), CLayout.Of(type, AbiTarget.I386), new LayoutComparer());
        }
    }

    private sealed class LayoutComparer : IEqualityComparer<StructLayoutDescription>
    {
        public bool Equals(StructLayoutDescription? x, StructLayoutDescription? y) =>
            x!.Size == y!.Size && x.Offsets.SequenceEqual(y.Offsets);

        public int GetHashCode(StructLayoutDescription obj) => obj.Size;
    }
}
