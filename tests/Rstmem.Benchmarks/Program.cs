using Rstmem.Benchmarks;

string which = args.Length > 0 ? args[0] : "allocator";
switch (which)
{
    case "allocator":
        AllocatorBenchmark.Run(args.Skip(1).ToArray());
        return 0;
    case "broker":
        return BrokerBenchmark.Run(args.Skip(1).ToArray(), Console.Out, Console.Error);
    default:
        Console.Error.WriteLine($"rstmem-benchmarks: unknown benchmark '{which}'; expected: allocator, broker");
        return 2;
}
