using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Interop.Uapi;
namespace Rstmem.Model;

/// <summary>One use case's pool: a static carve-out or OP-TEE's dynamic (lend-on-demand) pool.</summary>
public sealed class UseCasePoolOptions
{
    /// <summary>False leaves the use case unsupported: no heap node, RSTMEM_ALLOC gives EINVAL.</summary>
    public bool Enabled { get; set; } = true;

    /// <summary><c>static</c> or <c>dynamic</c>.</summary>
    public string Kind { get; set; } = "static";

    /// <summary>The carve-out size, or the dynamic pool's min_size chunk.</summary>
    public string Size { get; set; } = "32MiB";
}

/// <summary>
/// The reference model's configuration: the "Model" section of rstmemd.json.
/// Defaults give every generation all three use cases, a system heap and a
/// 64 MiB CMA heap named "reserved".
/// </summary>
public sealed class ModelOptions
{
    /// <summary><c>v4</c>, <c>v6</c> or <c>mainline</c>.</summary>
    public string Generation { get; set; } = "mainline";

    /// <summary>What the system heap may hand out in all (the model's stand-in for RAM).</summary>
    public string SystemHeapSize { get; set; } = "1GiB";

    /// <summary>The CMA heap's name ("reserved" when set by cma=; "linux,cma" from a DT node).</summary>
    public string CmaHeapName { get; set; } = "reserved";

    /// <summary>The CMA area's size; "0" for no CMA heap.</summary>
    public string CmaHeapSize { get; set; } = "64MiB";

    /// <summary>Whether the TEE driver has a shared-memory pool (OP-TEE does; a bare protected-memory backend does not, and SHM_ALLOC gives EINVAL).</summary>
    public bool TeeShmPool { get; set; } = true;

    /// <summary>Pools by use-case name: secure-video, trusted-ui, secure-video-record.</summary>
    public Dictionary<string, UseCasePoolOptions> UseCases { get; set; } = new(StringComparer.Ordinal)
    {
        ["secure-video"] = new() { Kind = "static", Size = "64MiB" },
        ["trusted-ui"] = new() { Kind = "static", Size = "16MiB" },
        ["secure-video-record"] = new() { Kind = "dynamic", Size = "32MiB" },
    };

    /// <summary>
    /// Every problem with these options, one line each naming the key, the
    /// value and what was expected; empty when valid.
    /// </summary>
    public IReadOnlyList<string> Validate(string section = "Model")
    {
        var problems = new List<string>();
        long page = Environment.SystemPageSize;
        if (!KernelGenerations.TryParse(Generation, out _))
        {
            problems.Add($"{section}:Generation: '{Generation}' is not a kernel generation; expected v4, v6 or mainline");
        }
        CheckSize(problems, $"{section}:SystemHeapSize", SystemHeapSize, page, allowZero: false);
        CheckSize(problems, $"{section}:CmaHeapSize", CmaHeapSize, page, allowZero: true);
        if (string.IsNullOrWhiteSpace(CmaHeapName) || CmaHeapName.Contains('/', StringComparison.Ordinal))
        {
            problems.Add($"{section}:CmaHeapName: '{CmaHeapName}' is not a heap name; expected a non-empty name without '/'");
        }
        foreach (var (name, pool) in UseCases)
        {
            string key = $"{section}:UseCases:{name}";
            if (UseCase.ByName(name) is null)
            {
                problems.Add($"{key}: '{name}' is not a use case; expected {string.Join(", ", UseCase.All.Select(u => u.Name))}");
                continue;
            }
            if (pool.Kind is not ("static" or "dynamic"))
            {
                problems.Add($"{key}:Kind: '{pool.Kind}' is not a pool kind; expected static or dynamic");
            }
            CheckSize(problems, $"{key}:Size", pool.Size, page, allowZero: false);
        }
        return problems;
    }

    /// <summary>Throws <see cref="ArgumentException"/> listing every problem, or returns the parsed generation.</summary>
    public KernelGeneration ValidatedGeneration()
    {
        IReadOnlyList<string> problems = Validate();
        if (problems.Count > 0)
        {
            throw new ArgumentException(string.Join("; ", problems));
        }
        return KernelGenerations.TryParse(Generation, out KernelGeneration generation)
            ? generation
            : throw new ArgumentException($"Model:Generation: '{Generation}' is not a kernel generation");
    }

    private static void CheckSize(List<string> problems, string key, string value, long page, bool allowZero)
    {
        if (!ByteSize.TryParse(value, out long bytes))
        {
            problems.Add($"{key}: '{value}' is not a size; expected {ByteSize.Expected}");
        }
        else if (bytes == 0 && !allowZero)
        {
            problems.Add($"{key}: '{value}' is zero; expected a size of at least one {page}-byte page");
        }
        else if (bytes % page != 0)
        {
            problems.Add($"{key}: '{value}' ({bytes} bytes) is not a whole number of pages; expected a multiple of {page}");
        }
    }
}
