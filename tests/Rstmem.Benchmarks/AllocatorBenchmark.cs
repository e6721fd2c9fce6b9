using System.Diagnostics;
using System.Globalization;
using Rstmem.Model.Pools;

namespace Rstmem.Benchmarks;

/// <summary>
/// 1M allocate/free pairs of mixed sizes on a 256 MiB pool of 4 KiB pages:
/// the model's treap first fit against a gen_pool-style bitmap first fit,
/// both replaying the same operation sequence, in the same process.
/// </summary>
internal static class AllocatorBenchmark
{
    private const long PoolBytes = 256L << 20;
    private const long PageBytes = 4096;
    private const int LiveTarget = 1200; // ~77% of the pool in use at steady state

    private interface IAllocator
    {
        bool TryAllocate(long pages, out long start);

        void Free(long start, long pages);

        long FreePages { get; }
    }

    private sealed class Treap(long pages) : IAllocator
    {
        public readonly ExtentAllocator Inner = new(pages);

        public bool TryAllocate(long pages, out long start) => Inner.TryAllocate(pages, out start);

        public void Free(long start, long pages) => Inner.Free(start, pages);

        public long FreePages => Inner.FreePages;
    }

    private sealed class Bitmap(long pages) : IAllocator
    {
        private readonly BitmapFirstFit inner = new(pages);

        public bool TryAllocate(long pages, out long start) => inner.TryAllocate(pages, out start);

        public void Free(long start, long pages) => inner.Free(start, pages);

        public long FreePages => inner.FreePages;
    }

    public static void Run(string[] args)
    {
        int pairs = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 1_000_000;
        long pages = PoolBytes / PageBytes;
        int[] sizes = MixedSizes(pairs, seed: 42);

        Console.WriteLine($"allocator benchmark: {pairs:N0} allocate/free pairs, mixed sizes 4 KiB..2 MiB, " +
            $"{PoolBytes >> 20} MiB pool of {PageBytes / 1024} KiB pages, ~{LiveTarget} buffers live");
        Console.WriteLine($"machine: {Environment.ProcessorCount} cores, {CpuModel()}, .NET {Environment.Version}");

        // Warm-up on a short run so both are JIT-compiled before timing.
        Replay(new Treap(pages), sizes.AsSpan(0, 20_000), out _, out _, out _);
        Replay(new Bitmap(pages), sizes.AsSpan(0, 20_000), out _, out _, out _);

        var treap = new Treap(pages);
        TimeSpan treapTime = Replay(treap, sizes, out long treapFailures, out double treapContiguity, out ulong treapPlacement);
        TimeSpan bitmapTime = Replay(new Bitmap(pages), sizes, out long bitmapFailures, out _, out ulong bitmapPlacement);

        Console.WriteLine();
        Console.WriteLine($"{"allocator",-36} {"total",9} {"ns/pair",8} {"failed allocs",14} {"contiguity*",11}");
        Print("treap first fit (model, O(log n))", treapTime, pairs, treapFailures, treapContiguity);
        Print("bitmap first fit (gen_pool baseline)", bitmapTime, pairs, bitmapFailures, treapContiguity);
        Console.WriteLine();
        Console.WriteLine($"speed-up over the baseline: {bitmapTime.TotalMilliseconds / treapTime.TotalMilliseconds:F1}x " +
            $"(same {pairs:N0}-pair sequence; every buffer placed at the same address: {(treapPlacement == bitmapPlacement ? "yes" : "NO")})");
        Console.WriteLine($"target: {pairs:N0} pairs in under 2 s: {(treapTime.TotalSeconds < 2 ? "met" : "NOT met")} ({treapTime.TotalSeconds:F3} s)");
        Console.WriteLine($"free extents at the end: {treap.Inner.ExtentCount:N0}; largest {treap.Inner.LargestFreeExtent * PageBytes / 1024:N0} KiB of {treap.Inner.FreePages * PageBytes / 1024:N0} KiB free");
        Console.WriteLine("* contiguity = largest free extent / free bytes, sampled every 1024 pairs and averaged (1 = unfragmented);");
        Console.WriteLine("  both allocators place every buffer identically, so they share one fragmentation figure");
    }

    private static void Print(string name, TimeSpan time, int pairs, long failures, double contiguity) =>
        Console.WriteLine($"{name,-36} {time.TotalSeconds,8:F3}s {time.TotalMilliseconds * 1e6 / pairs,8:F0} {failures,14:N0} {contiguity,11:F3}");

    /// <summary>Page counts: mostly small (a frame's worth of metadata), some large (video frames), a few huge.</summary>
    private static int[] MixedSizes(int count, int seed)
    {
        var random = new Random(seed);
        var sizes = new int[count];
        for (int i = 0; i < count; i++)
        {
            int roll = random.Next(100);
            sizes[i] = roll < 60 ? random.Next(1, 5) : roll < 90 ? random.Next(5, 65) : random.Next(65, 513);
        }
        return sizes;
    }

    private static TimeSpan Replay(IAllocator allocator, ReadOnlySpan<int> sizes, out long failures, out double contiguity, out ulong placement)
    {
        placement = 14695981039346656037; // FNV-1a over every start address
        var live = new (long Start, long Pages)[LiveTarget];
        int liveCount = 0;
        var random = new Random(7);
        failures = 0;
        double contiguitySum = 0;
        int samples = 0;
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < sizes.Length; i++)
        {
            if (allocator.TryAllocate(sizes[i], out long start))
            {
                placement = (placement ^ (ulong)start) * 1099511628211;
                if (liveCount < LiveTarget)
                {
                    live[liveCount++] = (start, sizes[i]);
                }
                else
                {
                    int victim = random.Next(liveCount);
                    allocator.Free(live[victim].Start, live[victim].Pages);
                    live[victim] = (start, sizes[i]);
                }
            }
            else
            {
                failures++;
                int victim = random.Next(liveCount);
                allocator.Free(live[victim].Start, live[victim].Pages);
                live[victim] = live[--liveCount];
            }
            if (allocator is Treap treap && (i & 1023) == 0 && treap.FreePages > 0)
            {
                contiguitySum += (double)treap.Inner.LargestFreeExtent / treap.FreePages;
                samples++;
            }
        }
        clock.Stop();
        contiguity = samples == 0 ? double.NaN : contiguitySum / samples;
        return clock.Elapsed;
    }

    private static string CpuModel()
    {
        try
        {
            return File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "unknown CPU";
        }
        catch (IOException)
        {
            return "unknown CPU";
        }
    }
}
