using System.CommandLine;
using Rstmem.Interop.Abi;

namespace Rstmem.Daemon.Cli;

/// <summary><c>rstmemd abi [--json]</c>: the kernel ABI this binary uses on this machine.</summary>
internal static class AbiCommand
{
    public static Command Create(TextWriter stdout)
    {
        var json = new Option<bool>("--json") { Description = "print JSON: {arch, ioctls, structs}, names as in the uapi headers" };
        var command = new Command("abi", "print the ioctl numbers and struct layouts this binary uses, to compare with a BSP's headers")
        {
            json,
        };
        command.SetAction(result =>
        {
            AbiDescription abi = AbiCatalog.Current.DescribeRuntime();
            stdout.Write(result.GetValue(json) ? AbiReport.ToJson(abi) : AbiReport.ToTable(abi));
            return RstmemdCli.ExitOk;
        });
        return command;
    }
}
