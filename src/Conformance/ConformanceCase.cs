using Rstmem.Interop;

namespace Rstmem.Conformance;

/// <summary>What a case runs against: a case names one kind, a target may serve several.</summary>
public enum TargetKind
{
    /// <summary>A DMA heap node (/dev/dma_heap/NAME): the dma-heap core suite.</summary>
    Heap,

    /// <summary>Anything that hands out dma-bufs (a heap, or a v4 TEE use case): the dma-buf suite.</summary>
    Buffers,

    /// <summary>A TEE device (/dev/teeN): the TEE suite.</summary>
    Tee,

    /// <summary>A bounded restricted/protected pool (restricted heaps, v4 use cases): the pool suite.</summary>
    Pool,
}

/// <summary>
/// One conformance case, written once against the kernel surface (IKernel)
/// so the same code runs on real devices and on the reference model.
/// </summary>
/// <param name="Id">Stable identifier, "suite.area.what" (the --filter and report key).</param>
/// <param name="Title">What the case checks, in one line.</param>
/// <param name="Mirrors">The kernel source condition it checks: "file: function: condition".</param>
/// <param name="Kind">The kind of target it runs against.</param>
/// <param name="Run">The check; fails with <see cref="CaseFailedException"/>, skips with <see cref="CaseSkippedException"/>.</param>
public sealed record ConformanceCase(string Id, string Title, string Mirrors, TargetKind Kind, Action<CaseContext> Run)
{
    /// <summary>The suite: the first component of the id ("dma-heap", "dma-buf", "tee", "pools").</summary>
    public string Suite => Id[..Id.IndexOf('.', StringComparison.Ordinal)];
}

public enum Outcome
{
    Pass,
    Fail,
    Skip,
}

/// <summary>The result of one case on one target.</summary>
public sealed record CaseResult(ConformanceCase Case, string Target, Outcome Outcome, string Detail, TimeSpan Duration);

/// <summary>A check did not hold: what was checked, what the kernel should have done, what it did.</summary>
public sealed class CaseFailedException : Exception
{
    public CaseFailedException(string what, string expected, string observed)
        : base($"{what}: expected {expected}, observed {observed}")
    {
        What = what;
        Expected = expected;
        Observed = observed;
    }

    public CaseFailedException() : this("check", "?", "?") { }

    public CaseFailedException(string message) : this(message, "?", "?") { }

    public CaseFailedException(string message, Exception innerException) : base(message, innerException)
    {
        What = message;
        Expected = "?";
        Observed = "?";
    }

    public string What { get; }

    public string Expected { get; }

    public string Observed { get; }
}

/// <summary>The case cannot run here (heap absent, budget too small, generation without the feature): a SKIP with this reason.</summary>
public sealed class CaseSkippedException : Exception
{
    public CaseSkippedException(string reason) : base(reason) { }

    public CaseSkippedException() { }

    public CaseSkippedException(string message, Exception innerException) : base(message, innerException) { }
}

/// <summary>The assertions cases use; each failure names expected and observed.</summary>
public static class Check
{
    public static void Errno(Errno expected, Errno observed, string what)
    {
        if (expected != observed)
        {
            throw new CaseFailedException(what, Describe(expected), Describe(observed));
        }
    }

    /// <summary>Any of several results the kernel may legitimately give.</summary>
    public static void ErrnoIn(IReadOnlyCollection<Errno> expected, Errno observed, string what)
    {
        if (!expected.Contains(observed))
        {
            throw new CaseFailedException(what, string.Join(" or ", expected.Select(Describe)), Describe(observed));
        }
    }

    public static void Equal<T>(T expected, T observed, string what)
    {
        if (!EqualityComparer<T>.Default.Equals(expected, observed))
        {
            throw new CaseFailedException(what, Show(expected), Show(observed));
        }
    }

    public static void That(bool condition, string what, string expected, string observed)
    {
        if (!condition)
        {
            throw new CaseFailedException(what, expected, observed);
        }
    }

    public static void Bytes(ReadOnlySpan<byte> expected, ReadOnlySpan<byte> observed, string what)
    {
        if (!expected.SequenceEqual(observed))
        {
            throw new CaseFailedException(what, Convert.ToHexString(expected), Convert.ToHexString(observed));
        }
    }

    public static string Describe(Errno errno) => errno == Interop.Errno.None ? "success" : errno.Name();

    private static string Show<T>(T value) => value switch
    {
        null => "null",
        string text => $"\"{text}\"",
        uint or ulong => $"{value} (0x{value:x})",
        _ => value.ToString() ?? "",
    };
}
