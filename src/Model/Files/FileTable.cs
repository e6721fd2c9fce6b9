using Rstmem.Interop;

namespace Rstmem.Model.Files;

/// <summary>
/// The model's files by their memfd's (device, inode), which a statx of any
/// descriptor of the file gives: a hash table whose chains run
/// through the files themselves (<see cref="ModelFile.NextInTable"/>), so a
/// file costs the table one reference in its bucket array and no node or
/// entry of its own. The bucket array doubles when the files outnumber the
/// buckets and never shrinks. Thread-safe.
/// </summary>
internal sealed class FileTable
{
    private const int InitialBuckets = 64;

    private readonly Lock gate = new();
    private ModelFile?[] buckets = new ModelFile?[InitialBuckets];
    private int count;

    public int Count
    {
        get
        {
            lock (gate)
            {
                return count;
            }
        }
    }

    /// <summary>The buckets, for tests: a power of two, at least the number of files.</summary>
    internal int BucketCount
    {
        get
        {
            lock (gate)
            {
                return buckets.Length;
            }
        }
    }

    public ModelFile? Find(FileIdentity identity)
    {
        lock (gate)
        {
            for (ModelFile? file = buckets[Bucket(identity, buckets.Length)]; file is not null; file = file.NextInTable)
            {
                if (file.Identity == identity)
                {
                    return file;
                }
            }
            return null;
        }
    }

    /// <summary>Adds <paramref name="file"/> under its <see cref="ModelFile.Identity"/>; a file already there under it is forgotten.</summary>
    public void Add(ModelFile file)
    {
        ArgumentNullException.ThrowIfNull(file);
        lock (gate)
        {
            if (ReferenceEquals(Find(file.Identity), file))
            {
                throw new InvalidOperationException("the file is already in the table");
            }
            Unlink(file.Identity, null);
            if (count == buckets.Length)
            {
                Grow();
            }
            ref ModelFile? head = ref buckets[Bucket(file.Identity, buckets.Length)];
            file.NextInTable = head;
            head = file;
            count++;
        }
    }

    /// <summary>Removes this very file (not another under the same identity since); false if it is not in the table.</summary>
    public bool Remove(ModelFile file)
    {
        ArgumentNullException.ThrowIfNull(file);
        lock (gate)
        {
            return Unlink(file.Identity, file) is not null;
        }
    }

    /// <summary>
    /// Unlinks <paramref name="only"/> from <paramref name="identity"/>'s chain,
    /// or, when it is null, the file of that identity; returns what it unlinked, or null.
    /// </summary>
    private ModelFile? Unlink(FileIdentity identity, ModelFile? only)
    {
        ref ModelFile? link = ref buckets[Bucket(identity, buckets.Length)];
        while (link is { } candidate)
        {
            if (only is null ? candidate.Identity == identity : ReferenceEquals(candidate, only))
            {
                link = candidate.NextInTable;
                candidate.NextInTable = null;
                count--;
                return candidate;
            }
            link = ref candidate.NextInTable;
        }
        return null;
    }

    private void Grow()
    {
        var grown = new ModelFile?[buckets.Length * 2];
        foreach (ModelFile? head in buckets)
        {
            ModelFile? file = head;
            while (file is not null)
            {
                ModelFile? next = file.NextInTable;
                ref ModelFile? bucket = ref grown[Bucket(file.Identity, grown.Length)];
                file.NextInTable = bucket;
                bucket = file;
                file = next;
            }
        }
        buckets = grown;
    }

    /// <summary>Fibonacci hashing of the inode number (the model's memfds share one device) into a power-of-two table.</summary>
    private static int Bucket(FileIdentity identity, int length) =>
        (int)((identity.Inode * 0x9E3779B97F4A7C15UL) >> (64 - System.Numerics.BitOperations.Log2((uint)length)));
}
