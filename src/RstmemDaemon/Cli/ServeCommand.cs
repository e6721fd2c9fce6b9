using System.CommandLine;

namespace Rstmem.Daemon.Cli;

/// <summary><c>rstmemd serve</c>: the broker. Until the reference kernel model exists there is no backend to serve from.</summary>
internal static class ServeCommand
{
    public static Command Create(TextWriter stderr)
    {
        var command = new Command("serve", "run the broker in the foreground");
        command.SetAction(_ =>
        {
            stderr.WriteLine("rstmemd serve: no backend is available yet: neither the reference kernel model nor a hardware backend is built into this version");
            return RstmemdCli.ExitFailure;
        });
        return command;
    }
}
