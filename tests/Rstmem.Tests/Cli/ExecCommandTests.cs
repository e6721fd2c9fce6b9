using Rstmem.Daemon.Cli;
using Rstmem.Tests.Support;

namespace Rstmem.Tests.Cli;

/// <summary>
/// <c>rstmemd exec</c> run in-process against a broker on the model: what the
/// program is given and what rstmemd returns. The shim's own behaviour is
/// tests/shim/shim-tests.sh's and the C test's (src/Native/preload/tests).
/// </summary>
public sealed class ExecCommandTests
{
    private static string Shim => Path.Combine(RepoPaths.Root, "build", "native", ExecCommand.LibraryName);

    [Fact]
    public void The_program_gets_the_shim_in_LD_PRELOAD_and_the_socket_and_its_status_is_returned()
    {
        Assert.True(File.Exists(Shim), $"{Shim} is missing: run ./build.sh");
        using var broker = new BrokerFixture();
        string output = Path.Combine(Path.GetDirectoryName(broker.SocketPath)!, "environment");
        var (exit, _, stderr) = CliRun.Run("exec", "--socket", broker.SocketPath, "--",
            "sh", "-c", "printf '%s\\n%s\\n' \"$LD_PRELOAD\" \"$RSTMEMD_SOCKET\" > \"$1\"; exit 7", "sh", output);

        Assert.True(exit == 7, $"exit {exit}: {stderr}");
        string[] lines = File.ReadAllLines(output);
        Assert.Equal(Shim, lines[0].Split(' ', ':')[^1]);
        Assert.Equal(broker.SocketPath, lines[1]);
    }

    [Fact]
    public void A_signal_that_ends_the_program_is_128_plus_its_number()
    {
        using var broker = new BrokerFixture();
        var (exit, _, _) = CliRun.Run("exec", "--socket", broker.SocketPath, "--", "sh", "-c", "kill -KILL $$");
        Assert.Equal(128 + 9, exit);
    }

    [Fact]
    public void Without_a_daemon_the_program_is_not_run_and_the_socket_is_named()
    {
        string socket = Path.Combine(Path.GetTempPath(), $"rstmemd-none-{Guid.NewGuid():N}.sock");
        string marker = socket + ".ran";
        var (exit, _, stderr) = CliRun.Run("exec", "--socket", socket, "--", "touch", marker);
        Assert.Equal(ExecCommand.ExitExecFailed, exit);
        Assert.Contains(socket, stderr, StringComparison.Ordinal);
        Assert.False(File.Exists(marker));
    }

    [Fact]
    public void A_missing_program_is_127_and_named()
    {
        using var broker = new BrokerFixture();
        var (exit, _, stderr) = CliRun.Run("exec", "--socket", broker.SocketPath, "--", "/nonexistent/program-x");
        Assert.Equal(ExecCommand.ExitNotFound, exit);
        Assert.Contains("/nonexistent/program-x", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void No_program_is_a_usage_error()
    {
        var (exit, _, stderr) = CliRun.Run("exec", "--socket", "/tmp/x.sock");
        Assert.Equal(RstmemdCli.ExitUsage, exit);
        Assert.Contains("program", stderr, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(null, "/lib/shim.so")]
    [InlineData("", "/lib/shim.so")]
    [InlineData("/lib/a.so", "/lib/a.so /lib/shim.so")]
    [InlineData("/lib/a.so:/lib/b.so", "/lib/a.so:/lib/b.so /lib/shim.so")]
    [InlineData("/lib/shim.so /lib/a.so", "/lib/shim.so /lib/a.so")]
    public void The_shim_is_appended_to_LD_PRELOAD_once(string? existing, string expected) =>
        Assert.Equal(expected, ExecCommand.WithPreload(existing, "/lib/shim.so"));

    [Fact]
    public void The_shim_of_this_build_tree_is_found()
    {
        Assert.Equal(Shim, ExecCommand.FindLibrary(out string searched));
        Assert.Contains("/usr/lib/", searched, StringComparison.Ordinal);
    }
}
