namespace Rstmem.Tests.Support;

/// <summary>
/// Tests that count this process's descriptors run alone: other tests open and
/// close descriptors in parallel and would move the count. So do tests that
/// make a descriptor inheritable for a child: a process another test starts
/// meanwhile would inherit it as well.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class SerialTests
{
    public const string Name = "process-wide counters";
}
