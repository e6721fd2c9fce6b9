using System.Diagnostics;
using System.IO.Enumeration;
using Rstmem.Conformance.Suites;

namespace Rstmem.Conformance;

/// <summary>Every case, in report order: dma-heap, dma-buf, tee, pools.</summary>
public static class ConformanceCatalog
{
    public static IReadOnlyList<ConformanceCase> All { get; } =
        [.. DmaHeapSuite.Cases(), .. DmaBufSuite.Cases(), .. TeeSuite.Cases(), .. PoolSuite.Cases()];

    /// <summary>Cases whose id matches any of the globs (* and ?); all when none are given.</summary>
    public static IReadOnlyList<ConformanceCase> Select(IReadOnlyCollection<string> globs)
    {
        ArgumentNullException.ThrowIfNull(globs);
        if (globs.Count == 0)
        {
            return All;
        }
        // The shell's * and ? (case-sensitive, no escapes): no regular expression engine in the binary.
        return All.Where(c => globs.Any(glob => FileSystemName.MatchesSimpleExpression(glob, c.Id, ignoreCase: false))).ToList();
    }
}

/// <summary>
/// Runs cases against the targets that serve their kind, one at a time;
/// each case's resources are closed before the next starts. A case kind no
/// target serves is one SKIP naming what is missing.
/// </summary>
public sealed class ConformanceRunner(ConformanceEnvironment environment, Budget budget)
{
    /// <summary>The (case, target) pairs a run will execute, in order.</summary>
    public IReadOnlyList<(ConformanceCase Case, Target? Target)> Plan(IReadOnlyList<ConformanceCase> cases)
    {
        ArgumentNullException.ThrowIfNull(cases);
        var plan = new List<(ConformanceCase, Target?)>();
        foreach (ConformanceCase c in cases)
        {
            List<Target> targets = environment.Targets.Where(t => t.Serves(c.Kind)).ToList();
            if (targets.Count == 0)
            {
                plan.Add((c, null));
            }
            plan.AddRange(targets.Select(t => (c, (Target?)t)));
        }
        return plan;
    }

    /// <param name="progress">Called before each (case, target): index from 1, total, case id, target name.</param>
    public IReadOnlyList<CaseResult> Run(IReadOnlyList<ConformanceCase> cases, Action<int, int, string, string>? progress, CancellationToken cancellation)
    {
        IReadOnlyList<(ConformanceCase Case, Target? Target)> plan = Plan(cases);
        var results = new List<CaseResult>(plan.Count);
        for (int i = 0; i < plan.Count && !cancellation.IsCancellationRequested; i++)
        {
            (ConformanceCase c, Target? target) = plan[i];
            progress?.Invoke(i + 1, plan.Count, c.Id, target?.Name ?? "-");
            results.Add(target is null
                ? new CaseResult(c, "-", Outcome.Skip, $"no {Describe(c.Kind)} to run on", TimeSpan.Zero)
                : RunOne(c, target, cancellation));
        }
        return results;
    }

    private CaseResult RunOne(ConformanceCase c, Target target, CancellationToken cancellation)
    {
        var clock = Stopwatch.StartNew();
        Outcome outcome = Outcome.Pass;
        string detail = "";
        using (var context = new CaseContext(environment, target, budget, cancellation))
        {
            try
            {
                c.Run(context);
            }
            catch (CaseFailedException failure)
            {
                (outcome, detail) = (Outcome.Fail, failure.Message);
            }
            catch (CaseSkippedException skip)
            {
                (outcome, detail) = (Outcome.Skip, skip.Message);
            }
            catch (OperationCanceledException)
            {
                (outcome, detail) = (Outcome.Skip, "interrupted");
            }
#pragma warning disable CA1031 // a case that throws anything else is a failed case, reported with the exception, and the run goes on
            catch (Exception unexpected)
#pragma warning restore CA1031
            {
                (outcome, detail) = (Outcome.Fail, $"unexpected {unexpected.GetType().Name}: {unexpected.Message}");
            }
        }
        return new CaseResult(c, target.Name, outcome, detail, clock.Elapsed);
    }

    private static string Describe(TargetKind kind) => kind switch
    {
        TargetKind.Heap => "DMA heap (/dev/dma_heap/*, or --heap)",
        TargetKind.Buffers => "buffer source (a DMA heap or a v4 TEE use case)",
        TargetKind.Tee => "TEE device (/dev/tee*, or --tee)",
        TargetKind.Pool => "restricted pool (a protected,*/restricted,* heap or a v4 TEE use case)",
        _ => kind.ToString(),
    };
}
