using Rstmem.Tests.Support;

namespace Rstmem.Tests.Aot;

/// <summary>
/// The NativeAOT rstmemd that packaging/publish.sh writes to dist/linux-x64
/// against the JIT build these tests run with. packaging/tests/aot-smoke.sh
/// runs the rest (conformance, serve, arm64 under qemu) on the binaries.
/// </summary>
public sealed class AotBinaryTests
{
    private static string AotRstmemd => Path.Combine(RepoPaths.Root, "dist", "linux-x64", "rstmemd");

    [Fact]
    public void The_NativeAOT_rstmemd_prints_the_same_abi_json_as_the_JIT_build()
    {
        if (!File.Exists(AotRstmemd))
        {
            Assert.Skip($"{AotRstmemd} is not built; packaging/publish.sh linux-x64 builds it");
        }
        ProcessResult jit = ProcessRunner.Rstmemd("abi", "--json");
        ProcessResult aot = ProcessRunner.Run(AotRstmemd, ["abi", "--json"]);

        Assert.True(jit.ExitCode == 0, jit.ToString());
        Assert.True(aot.ExitCode == 0, aot.ToString());
        Assert.Contains("\"dma_heap_allocation_data\"", aot.Stdout, StringComparison.Ordinal);
        Assert.True(jit.Stdout == aot.Stdout,
            $"{AotRstmemd} abi --json differs from the JIT build's (rebuild it with packaging/publish.sh linux-x64 if the sources changed):\n--- JIT\n{jit.Stdout}\n--- AOT\n{aot.Stdout}");
    }
}
