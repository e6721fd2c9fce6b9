using System.Diagnostics;
using Rstmem.Tests.Support;

namespace Rstmem.Tests.Scripts;

/// <summary>
/// tests/lib/common.sh, the shell library every script shares: its exit
/// actions are the clean-up that undoes what a script changed on the machine
/// (binfmt_misc for the board's image, temporary trees, qemu), so they must
/// all run however the script ends.
/// </summary>
public sealed class CommonShTests : IDisposable
{
    private readonly string directory = Directory.CreateTempSubdirectory("rstmem-common-sh-").FullName;

    public void Dispose() => Directory.Delete(directory, recursive: true);

    [Fact]
    public void A_second_TERM_during_the_clean_up_does_not_cut_it_short()
    {
        string goOn = Path.Combine(directory, "go-on");
        string cleaned = Path.Combine(directory, "cleaned");
        string started = Path.Combine(directory, "started");
        string ready = Path.Combine(directory, "ready");
        // Actions run last-registered first: the second one waits for the go-on file, so the
        // test's second TERM arrives while the clean-up is under way, by the order of events.
        string script = $$"""
            . '{{Path.Combine(RepoPaths.Root, "tests", "lib", "common.sh")}}'
            LOG_PREFIX=common-sh-test
            on_exit 'echo cleaned > {{cleaned}}'
            on_exit 'echo started > {{started}}; until [ -e {{goOn}} ]; do sleep 0.01; done'
            sleep 600 &
            on_exit "kill $!"
            echo ready > '{{ready}}'
            wait $!
            """;
        using Process shell = Process.Start(new ProcessStartInfo("bash", ["-c", script]) { UseShellExecute = false })!;
        try
        {
            WaitForFile(ready, shell);
            Signal(shell, "TERM");
            WaitForFile(started, shell);
            Signal(shell, "TERM"); // a repeated kill, as when a stopped build is stopped again
            File.WriteAllText(goOn, "");

            Assert.True(shell.WaitForExit(GiveUp.Milliseconds), "the script did not exit");
            Assert.Equal(143, shell.ExitCode);
            Assert.True(File.Exists(cleaned), "the first exit action never ran: the second TERM ended the clean-up");
        }
        finally
        {
            if (!shell.HasExited)
            {
                shell.Kill(entireProcessTree: true);
            }
        }
    }

    private static void Signal(Process process, string signal) =>
        Assert.Equal(0, ProcessRunner.Run("kill", ["-" + signal, process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]).ExitCode);

    private static void WaitForFile(string path, Process process)
    {
        var bound = Stopwatch.StartNew(); // a bound on a hang, not a criterion
        while (!File.Exists(path))
        {
            Assert.False(process.HasExited, $"the script exited {(process.HasExited ? process.ExitCode : 0)} before writing {path}");
            Assert.True(bound.Elapsed < GiveUp.After, $"{path} never appeared");
            Thread.Sleep(10);
        }
    }
}
