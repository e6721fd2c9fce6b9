using Rstmem.Daemon.Cli;

return RstmemdCli.Run(args, Console.Out, Console.Error);
