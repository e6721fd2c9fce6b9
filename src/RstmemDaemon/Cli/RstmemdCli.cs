using System.CommandLine;
using System.CommandLine.Help;
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

    public const string Name = "rstmemd";

    private const string Usage = "usage: rstmemd <command> [options]   commands: serve, heaps, alloc, stats, usage, abi, conformance, exec   (rstmemd --help for details)";

    /// <summary>One line naming what is wrong, then the usage line; exit code 2.</summary>
    public static int UsageError(TextWriter stderr, string message)
    {
        ArgumentNullException.ThrowIfNull(stderr);
        stderr.WriteLine($"rstmemd: {message}");
        stderr.WriteLine(Usage);
        return ExitUsage;
    }

    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(stdout);
        ArgumentNullException.ThrowIfNull(stderr);

        // A plain Command named "rstmemd", not RootCommand: RootCommand names itself after the
        // executable through reflection over the entry assembly (on every start, READY=1 included),
        // and in a test host that name is the runner's.
        var root = new Command(Name, "rstmemd: brokers restricted (protected) dma-buf memory to unprivileged clients")
        {
            new HelpOption(),
            new VersionOption(),
            ServeCommand.Create(stderr),
            ClientCommands.Heaps(stdout, stderr),
            ClientCommands.Alloc(stdout, stderr),
            ClientCommands.Stats(stdout, stderr),
            ClientCommands.Usage(stdout, stderr),
            AbiCommand.Create(stdout),
            ConformanceCommand.Create(stdout, stderr),
            ExecCommand.Create(stderr),
        };

        ParseResult parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            // The most specific error first: an unknown token says more than "a command is required".
            ParseError error = parsed.Errors.OrderBy(e => e.Message.StartsWith("Required command", StringComparison.Ordinal)).First();
            return UsageError(stderr, error.Message);
        }
        return parsed.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr });
    }
}
