using Rstmem.Daemon.Cli;
using Rstmem.Tests.Support;

namespace Rstmem.Tests.Cli;

public sealed class CliTests
{
    private static (int Exit, string Stdout, string Stderr) Run(params string[] args) => CliRun.Run(args);

    [Theory]
    [InlineData("frobnicate")]
    [InlineData("abi", "--jsno")]
    [InlineData("abi", "extra")]
    [InlineData()]
    public void Bad_usage_prints_one_error_line_and_the_usage_and_exits_2(params string[] args)
    {
        var (exit, stdout, stderr) = Run(args);

        Assert.Equal(RstmemdCli.ExitUsage, exit);
        Assert.Equal("", stdout);
        string[] lines = stderr.TrimEnd('\n').Split('\n');
        Assert.Equal(2, lines.Length);
        Assert.StartsWith("rstmemd: ", lines[0], StringComparison.Ordinal);
        if (args.Length > 0)
        {
            Assert.Contains(args[^1], lines[0], StringComparison.Ordinal);
        }
        Assert.StartsWith("usage: rstmemd ", lines[1], StringComparison.Ordinal);
    }

    [Fact]
    public void Abi_prints_an_aligned_table_by_default()
    {
        var (exit, stdout, stderr) = Run("abi");

        Assert.Equal(0, exit);
        Assert.Equal("", stderr);
        Assert.Matches(@"(?m)^TEE_IOC_VERSION\s+0x800CA400\s+R\s+0xa4\s+0\s+12$", stdout);
        Assert.Matches(@"(?m)^dma_heap_allocation_data\s+24\s+len@0 fd@8 fd_flags@12 heap_flags@16$", stdout);
    }

    [Fact]
    public void Help_exits_0()
    {
        var (exit, stdout, _) = Run("--help");
        Assert.Equal(0, exit);
        Assert.Contains("abi", stdout, StringComparison.Ordinal);
    }
}
