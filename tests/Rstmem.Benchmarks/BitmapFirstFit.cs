using System.Numerics;

namespace Rstmem.Benchmarks;

/// <summary>
/// The baseline: the kernel's gen_pool first fit, a bitmap of pages searched a
/// 64-bit word at a time (bitmap_find_next_zero_area). O(pages) per allocation.
/// </summary>
internal sealed class BitmapFirstFit(long totalPages)
{
    private readonly long pages = totalPages;
    private readonly ulong[] words = new ulong[(totalPages + 63) / 64];

    public long FreePages { get; private set; } = totalPages;

    public bool TryAllocate(long count, out long start)
    {
        long index = 0;
        while (true)
        {
            index = NextZero(index);
            if (index < 0 || index + count > pages)
            {
                start = -1;
                return false;
            }
            long busy = NextOne(index, index + count);
            if (busy < 0)
            {
                Set(index, count, true);
                FreePages -= count;
                start = index;
                return true;
            }
            index = busy + 1;
        }
    }

    public void Free(long start, long count)
    {
        Set(start, count, false);
        FreePages += count;
    }

    private long NextZero(long from)
    {
        for (long w = from / 64; w < words.Length; w++)
        {
            ulong inverted = ~words[w];
            if (w == from / 64)
            {
                inverted &= ulong.MaxValue << (int)(from % 64);
            }
            if (inverted != 0)
            {
                long bit = w * 64 + BitOperations.TrailingZeroCount(inverted);
                return bit < pages ? bit : -1;
            }
        }
        return -1;
    }

    private long NextOne(long from, long end)
    {
        for (long w = from / 64; w * 64 < end; w++)
        {
            ulong bits = words[w];
            if (w == from / 64)
            {
                bits &= ulong.MaxValue << (int)(from % 64);
            }
            if (bits != 0)
            {
                long bit = w * 64 + BitOperations.TrailingZeroCount(bits);
                return bit < end ? bit : -1;
            }
        }
        return -1;
    }

    private void Set(long start, long count, bool value)
    {
        for (long i = start; i < start + count; i++)
        {
            if (value)
            {
                words[i / 64] |= 1UL << (int)(i % 64);
            }
            else
            {
                words[i / 64] &= ~(1UL << (int)(i % 64));
            }
        }
    }
}
