using System.Text.RegularExpressions;
using Rstmem.Daemon.Cli;
using Rstmem.Tests.Support;

namespace Rstmem.Tests.Cli;

public sealed class CliTests
{
    /// <summary>Every command rstmemd has, as this test states them.</summary>
    private static readonly string[] Commands = ["serve", "heaps", "alloc", "stats", "usage", "abi", "conformance", "exec"];

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
    public void Help_names_the_program_rstmemd_in_process_too()
    {
        // The test runner hosts this call: the program's name must not come from the host executable.
        var (exit, stdout, stderr) = Run("--help");
        Assert.Equal(0, exit);
        Assert.Equal("", stderr);
        Assert.Matches(@"(?m)^Usage:\n  rstmemd \[command\] \[options\]$", stdout);
        Assert.Matches(@"(?m)^  --version\s{2,}\S", stdout);
    }

    [Fact]
    public void Help_shows_the_usage_and_describes_every_command_the_usage_line_names()
    {
        var (exit, stdout, stderr) = ProcessRunner.Rstmemd("--help");

        Assert.Equal(0, exit);
        Assert.Equal("", stderr);
        Assert.Matches(@"(?m)^Usage:\n  rstmemd \[command\] \[options\]$", stdout);
        // The Commands section: one line per command, its name and a description.
        Match section = Regex.Match(stdout, @"(?ms)^Commands:\n(.*?)(?:\n\n|\z)");
        Assert.True(section.Success, $"no Commands section in:\n{stdout}");
        string[] entries = section.Groups[1].Value.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.All(entries, entry => Assert.Matches(@"^  [a-z]+( <[a-z]+>)?\s{2,}\S", entry)); // exec <program>
        Assert.Equal(Commands.Order(StringComparer.Ordinal), entries.Select(e => e.TrimStart().Split(' ')[0]).Order(StringComparer.Ordinal));

        // The one-line usage printed after a usage error names the same commands.
        var (_, _, usageError) = Run("frobnicate");
        Match named = Regex.Match(usageError, @"commands: ([a-z, ]+?)\s{2,}");
        Assert.True(named.Success, usageError);
        Assert.Equal(Commands, named.Groups[1].Value.Split(", "));
    }

    public static TheoryData<string> CommandNames => new(Commands);

    [Theory]
    [MemberData(nameof(CommandNames))]
    public void Each_command_has_help_with_its_usage(string command)
    {
        var (exit, stdout, stderr) = ProcessRunner.Rstmemd(command, "--help");

        Assert.Equal(0, exit);
        Assert.Equal("", stderr);
        Assert.Matches($@"(?m)^Usage:\n  rstmemd {command}( <[a-z]+>\.\.\.)? \[options\]$", stdout);
        Assert.Matches(@"(?m)^  -\?, -h, --help\s{2,}\S", stdout);
    }
}
