using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Interop.Uapi;
using Rstmem.Model;

namespace Rstmem.Daemon.Backends;

/// <summary>
/// The heaps rstmemd offers, by name and by use case. Heap nodes that appear
/// later (a module loaded) are picked up by <see cref="Refresh"/>; nodes that
/// vanish are dropped. Used from the broker's one thread.
/// </summary>
public sealed class HeapCatalog : IDisposable
{
    private readonly List<HeapProvider> providers = [];
    private readonly List<SafeFd> owned = [];

    public int Count => providers.Count;

    public IReadOnlyList<HeapProvider> All => providers;

    public void Add(HeapProvider provider) => providers.Add(provider);

    /// <summary>A descriptor the providers share (the v4 TEE context), closed with the catalog.</summary>
    public void Own(SafeFd fd) => owned.Add(fd);

    public HeapProvider? ByName(string name) => ByName(name.AsSpan());

    /// <summary>As <see cref="ByName(string)"/>, for a name not made into a string (the broker's request path allocates nothing).</summary>
    public HeapProvider? ByName(ReadOnlySpan<char> name)
    {
        foreach (HeapProvider provider in providers)
        {
            if (name.SequenceEqual(provider.Name))
            {
                return provider;
            }
        }
        return null;
    }

    /// <summary>The provider for a use case: the generation's own heap first, then a vendor alias.</summary>
    public HeapProvider? ByUseCase(string useCase) => ByUseCase(useCase.AsSpan());

    /// <summary>As <see cref="ByUseCase(string)"/>, without a string.</summary>
    public HeapProvider? ByUseCase(ReadOnlySpan<char> useCase)
    {
        HeapProvider? alias = null;
        foreach (HeapProvider provider in providers)
        {
            if (provider.UseCase is { } known && useCase.SequenceEqual(known.Name))
            {
                if (provider.Generation is not null)
                {
                    return provider;
                }
                alias ??= provider;
            }
        }
        return alias;
    }

    /// <summary>
    /// Scans /dev/dma_heap and adds the heaps not yet known: protected,*
    /// (mainline) or restricted,* (v6) by use case, and the extras configured,
    /// mapped through the alias table. Returns the generation seen.
    /// </summary>
    public KernelGeneration? Refresh(IKernel kernel, IReadOnlyCollection<string> extraHeaps, IReadOnlyDictionary<string, string> aliases, List<string>? notes = null)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(extraHeaps);
        ArgumentNullException.ThrowIfNull(aliases);
        IReadOnlyList<string> names = kernel.ListDirectory(DevicePaths.HeapDirectory);
        KernelGeneration? generation = KernelGenerations.FromHeapNames(names);

        foreach (HeapProvider gone in providers.Where(p => p is DmaHeapProvider && !names.Contains(p.Name)).ToList())
        {
            notes?.Add($"{DevicePaths.HeapNode(gone.Name)}: gone");
            providers.Remove(gone);
            gone.Dispose();
        }
        foreach (string name in names)
        {
            if (ByName(name) is not null)
            {
                continue;
            }
            if (System.Text.Encoding.UTF8.GetByteCount(name) >= Protocol.RstmemProtocol.RSTMEM_HEAP_NAME_LEN)
            {
                notes?.Add($"{DevicePaths.HeapNode(name)}: skipped: the protocol carries heap names of at most {Protocol.RstmemProtocol.RSTMEM_HEAP_NAME_LEN - 1} bytes");
                continue;
            }
            UseCase? useCase = null;
            bool restricted = false;
            KernelGeneration? heapGeneration = null;
            if (generation?.HeapPrefix() is { } prefix && name.StartsWith(prefix, StringComparison.Ordinal))
            {
                useCase = UseCase.ByName(name[prefix.Length..]);
                restricted = true;
                heapGeneration = generation;
            }
            else if (extraHeaps.Contains(name))
            {
                string? alias = aliases.GetValueOrDefault(name) ?? HeapAliases.BuiltIn.GetValueOrDefault(name);
                useCase = alias is null ? null : UseCase.ByName(alias);
                restricted = useCase is not null;
            }
            else
            {
                continue;
            }
            Errno errno = DmaHeapProvider.TryOpen(kernel, name, useCase, heapGeneration, restricted, out DmaHeapProvider? provider);
            if (errno != Errno.None)
            {
                notes?.Add($"{DevicePaths.HeapNode(name)}: open: {errno.Describe()}");
                continue;
            }
            notes?.Add($"{DevicePaths.HeapNode(name)}: {(useCase is null ? "plain heap" : $"use case {useCase}")}");
            providers.Add(provider!);
        }
        return generation;
    }

    public void Dispose()
    {
        foreach (HeapProvider provider in providers)
        {
            provider.Dispose();
        }
        providers.Clear();
        foreach (SafeFd fd in owned)
        {
            fd.Dispose();
        }
        owned.Clear();
    }
}
