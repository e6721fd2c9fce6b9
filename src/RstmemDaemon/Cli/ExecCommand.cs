using System.CommandLine;
using System.ComponentModel;
using System.Diagnostics;
using System.Runtime.InteropServices;
using Rstmem.Daemon.Client;
using Rstmem.Daemon.Protocol;
using Rstmem.Interop;
using Rstmem.Interop.Uapi;

namespace Rstmem.Daemon.Cli;

/// <summary>
/// <c>rstmemd exec [--socket PATH] -- PROGRAM ARGS...</c>: runs an unmodified
/// program with librstmem-preload.so (src/Native/preload), so that its own
/// opens of /dev/dma_heap/&lt;name&gt; and its DMA_HEAP_IOCTL_ALLOC go through
/// the daemon. Exit status: the program's, 128+N when signal N ended it;
/// 125 when rstmemd exec itself failed (no shim, no daemon), 126 when the
/// program could not be run, 127 when it was not found (as env(1) and the shells).
/// </summary>
internal static class ExecCommand
{
    public const string LibraryName = "librstmem-preload.so";

    /// <summary>Names a shim to use instead of the search (a build tree elsewhere, a test).</summary>
    public const string LibraryEnvironment = "RSTMEM_PRELOAD_LIBRARY";

    public const int ExitExecFailed = 125;
    public const int ExitCannotRun = 126;
    public const int ExitNotFound = 127;

    public static Command Create(TextWriter stderr)
    {
        var socket = new Option<string?>("--socket") { Description = $"the daemon's socket (default: ${RstmemProtocol.RSTMEM_SOCKET_ENV}, else the daemon's default path)" };
        var program = new Argument<string[]>("program") { Description = "the program and its arguments, after --", Arity = ArgumentArity.OneOrMore };
        var command = new Command("exec", $"run a program with {LibraryName}: its own /dev/dma_heap opens and allocations go through the daemon") { socket, program };
        command.SetAction(result => Run(result.GetValue(socket), result.GetValue(program)!, stderr));
        return command;
    }

    private static int Run(string? socketOption, string[] program, TextWriter stderr)
    {
        string? library = FindLibrary(out string searched);
        if (library is null)
        {
            stderr.WriteLine($"rstmemd exec: {LibraryName} not found; looked in {searched} (build it with ./build.sh, install librstmem1, or set {LibraryEnvironment})");
            return ExitExecFailed;
        }
        string socket = socketOption ?? RstmemClient.DefaultSocketPath();
        try
        {
            // Fail here, with the daemon named, rather than let the program meet plain ENOENT/EACCES.
            using RstmemClient client = RstmemClient.Connect(socket);
        }
        catch (Exception e) when (e is RstmemException or ErrnoException or ProtocolException)
        {
            stderr.WriteLine($"rstmemd exec: {e.Message}");
            return ExitExecFailed;
        }

        var start = new ProcessStartInfo(program[0]) { UseShellExecute = false };
        foreach (string argument in program.AsSpan(1))
        {
            start.ArgumentList.Add(argument);
        }
        start.Environment["LD_PRELOAD"] = WithPreload(Environment.GetEnvironmentVariable("LD_PRELOAD"), library);
        start.Environment[RstmemProtocol.RSTMEM_SOCKET_ENV] = socket;

        Process child;
        try
        {
            child = Process.Start(start)!;
        }
        catch (Win32Exception e)
        {
            var errno = (Errno)e.NativeErrorCode;
            stderr.WriteLine($"rstmemd exec: cannot run '{program[0]}': {errno.Describe()}");
            return errno == Errno.ENOENT ? ExitNotFound : ExitCannotRun;
        }
        using (child)
        {
            // The terminal's SIGINT and SIGQUIT reach the program too: wait for it to
            // decide. SIGTERM and SIGHUP sent to rstmemd alone are passed on.
            using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, context => context.Cancel = true);
            using var quit = PosixSignalRegistration.Create(PosixSignal.SIGQUIT, context => context.Cancel = true);
            using var terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context => Forward(context, child));
            using var hangUp = PosixSignalRegistration.Create(PosixSignal.SIGHUP, context => Forward(context, child));
            child.WaitForExit();
            // .NET reports a child ended by signal N as 128 + N, as the shells do.
            return child.ExitCode;
        }
    }

    private static void Forward(PosixSignalContext context, Process child)
    {
        context.Cancel = true;
        if (!child.HasExited)
        {
            Sys.TryKill(child.Id, context.Signal == PosixSignal.SIGTERM ? Signals.SIGTERM : Signals.SIGHUP);
        }
    }

    /// <summary>LD_PRELOAD with the shim after what was there (ld.so reads spaces and colons as separators).</summary>
    public static string WithPreload(string? existing, string library)
    {
        ArgumentNullException.ThrowIfNull(library);
        if (string.IsNullOrWhiteSpace(existing))
        {
            return library;
        }
        string[] entries = existing.Split([' ', ':'], StringSplitOptions.RemoveEmptyEntries);
        return entries.Contains(library, StringComparer.Ordinal) ? existing : existing + " " + library;
    }

    /// <summary>
    /// The shim: <see cref="LibraryEnvironment"/>, else the build tree this
    /// rstmemd belongs to (build/native/ above its directory), else the
    /// installed one (librstmem1: /usr/lib/&lt;multiarch&gt;/rstmem/).
    /// </summary>
    public static string? FindLibrary(out string searched)
    {
        var candidates = new List<string>();
        string? named = Environment.GetEnvironmentVariable(LibraryEnvironment);
        if (!string.IsNullOrEmpty(named))
        {
            candidates.Add(named);
        }
        for (DirectoryInfo? directory = new(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            string inBuild = Path.Combine(directory.FullName, "build", "native", LibraryName);
            if (File.Exists(Path.Combine(directory.FullName, "build.sh")) || File.Exists(inBuild))
            {
                candidates.Add(inBuild);
                break;
            }
        }
        if (Multiarch() is { } multiarch)
        {
            candidates.Add($"/usr/lib/{multiarch}/rstmem/{LibraryName}");
        }
        candidates.Add($"/usr/local/lib/rstmem/{LibraryName}");
        searched = string.Join(", ", candidates);
        return candidates.FirstOrDefault(File.Exists) is { } found ? Path.GetFullPath(found) : null;
    }

    private static string? Multiarch() => RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.X64 => "x86_64-linux-gnu",
        Architecture.Arm64 => "aarch64-linux-gnu",
        Architecture.Arm => "arm-linux-gnueabihf",
        _ => null,
    };
}
