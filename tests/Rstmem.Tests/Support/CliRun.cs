using Rstmem.Daemon.Cli;

namespace Rstmem.Tests.Support;

/// <summary>The rstmemd command line run in-process, its output captured.</summary>
internal static class CliRun
{
    public static (int Exit, string Stdout, string Stderr) Run(params string[] args)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        int exit = RstmemdCli.Run(args, stdout, stderr);
        return (exit, stdout.ToString(), stderr.ToString());
    }
}
