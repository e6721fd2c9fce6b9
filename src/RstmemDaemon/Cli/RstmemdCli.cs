using System.CommandLine;
using System.CommandLine.Parsing;

namespace Rstmem.Daemon.Cli;

/// <summary>
/// The <c>rstmemd</c> command line. Exit codes: 0 success, 1 the operation
/// failed, 2 the command line itself was wrong (one line naming the problem,
/// then the usage line).
/// </summary>
public static class RstmemdCli
{
    public const int ExitOk = 0;
    public const int ExitFailure = 1;
    public const int ExitUsage = 2;

    private const string Usage = "usage: rstmemd <command> [options]   commands: serve, heaps, alloc, stats, abi   (rstmemd --help for details)";

    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(stdout);
        ArgumentNullException.ThrowIfNull(stderr);

        var root = new RootCommand("rstmemd: brokers restricted (protected) dma-buf memory to unprivileged clients")
        {
            AbiCommand.Create(stdout),
            ServeCommand.Create(stderr),
        };

        ParseResult parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            // The most specific error first: an unknown token says more than "a command is required".
            ParseError error = parsed.Errors.OrderBy(e => e.Message.StartsWith("Required command", StringComparison.Ordinal)).First();
            stderr.WriteLine($"rstmemd: {error.Message}");
            stderr.WriteLine(Usage);
            return ExitUsage;
        }
        return parsed.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr });
    }
}
