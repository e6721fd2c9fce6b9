using Rstmem.Model.Pools;

namespace Rstmem.Tests.Model;

public sealed class ExtentAllocatorTests
{
    /// <summary>The reference: gen_pool_first_fit's linear bitmap walk.</summary>
    private sealed class BitmapFirstFit(int pages)
    {
        private readonly bool[] used = new bool[pages];

        public long Allocate(int count)
        {
            for (int start = 0, run = 0; start + run < used.Length;)
            {
                if (used[start + run])
                {
                    start += run + 1;
                    run = 0;
                }
                else if (++run == count)
                {
                    Array.Fill(used, true, start, count);
                    return start;
                }
            }
            return -1;
        }

        public void Free(long start, int count) => Array.Fill(used, false, (int)start, count);

        public long FreePages => used.Count(u => !u);

        public IEnumerable<(long, long)> Extents()
        {
            for (int i = 0; i < used.Length;)
            {
                if (used[i])
                {
                    i++;
                    continue;
                }
                int start = i;
                while (i < used.Length && !used[i])
                {
                    i++;
                }
                yield return (start, i - start);
            }
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void Agrees_with_a_linear_first_fit_over_thousands_of_random_operations(int seed)
    {
        const int pages = 4096;
        var random = new Random(seed);
        var allocator = new ExtentAllocator(pages);
        var reference = new BitmapFirstFit(pages);
        var live = new List<(long Start, int Count)>();

        for (int step = 0; step < 20_000; step++)
        {
            if (live.Count > 0 && random.Next(100) < 45)
            {
                int index = random.Next(live.Count);
                var (start, count) = live[index];
                live.RemoveAt(index);
                allocator.Free(start, count);
                reference.Free(start, count);
            }
            else
            {
                int count = random.Next(100) < 80 ? random.Next(1, 16) : random.Next(16, 600);
                long expected = reference.Allocate(count);
                bool ok = allocator.TryAllocate(count, out long start);
                Assert.Equal(expected >= 0, ok);
                Assert.Equal(expected, start);
                if (ok)
                {
                    live.Add((start, count));
                }
            }
            Assert.Equal(reference.FreePages, allocator.FreePages);
            if (step % 997 == 0)
            {
                var extents = reference.Extents().ToList();
                Assert.Equal(extents, allocator.FreeExtents().ToList());
                Assert.Equal(extents.Count, allocator.ExtentCount);
                Assert.Equal(extents.Count == 0 ? 0 : extents.Max(e => e.Item2), allocator.LargestFreeExtent);
            }
        }
    }

    [Fact]
    public void Freeing_coalesces_with_both_neighbours()
    {
        var allocator = new ExtentAllocator(10);
        Assert.True(allocator.TryAllocate(3, out long a));
        Assert.True(allocator.TryAllocate(3, out long b));
        Assert.True(allocator.TryAllocate(3, out long c));
        Assert.Equal((0L, 3L, 6L), (a, b, c));
        allocator.Free(a, 3);
        allocator.Free(c, 3);
        Assert.Equal([(0L, 3L), (6L, 4L)], allocator.FreeExtents());
        allocator.Free(b, 3);
        Assert.Equal([(0L, 10L)], allocator.FreeExtents());
        Assert.Equal(1, allocator.ExtentCount);
    }

    [Fact]
    public void Zero_pages_and_too_many_pages_are_refused()
    {
        var allocator = new ExtentAllocator(8);
        Assert.False(allocator.TryAllocate(0, out _));
        Assert.False(allocator.TryAllocate(9, out _));
        Assert.Equal(8, allocator.FreePages);
    }

    [Fact]
    public void A_double_free_is_detected_and_changes_nothing()
    {
        var allocator = new ExtentAllocator(8);
        Assert.True(allocator.TryAllocate(4, out long start));
        allocator.Free(start, 4);
        var error = Assert.Throws<InvalidOperationException>(() => allocator.Free(start, 2));
        Assert.Contains("already free", error.Message, StringComparison.Ordinal);
        Assert.Equal([(0L, 8L)], allocator.FreeExtents());
        Assert.Throws<ArgumentOutOfRangeException>(() => allocator.Free(6, 4));
    }
}
