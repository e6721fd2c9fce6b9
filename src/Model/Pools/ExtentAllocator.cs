using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Interop.Uapi;
namespace Rstmem.Model.Pools;

/// <summary>
/// First-fit allocation of page runs, the policy of the kernel's gen_pool
/// (gen_pool_first_fit: the lowest address that fits), in O(log n) for n free
/// extents. Free extents live in a treap ordered by start page; every node
/// also knows the longest extent in its subtree, so the search for the
/// lowest-addressed extent of at least k pages descends one path instead of
/// walking a bitmap. Freeing coalesces with both neighbours. Not thread-safe:
/// the pool that owns it holds the lock.
/// </summary>
public sealed class ExtentAllocator
{
    private sealed class Node(long start, long length, uint priority)
    {
        public long Start = start;
        public long Length = length;
        public long MaxLength = length;
        public readonly uint Priority = priority;
        public Node? Left;
        public Node? Right;

        public long End => Start + Length;
    }

    private Node? root;
    private uint seed = 0x9E3779B9;

    /// <summary>An allocator over pages [0, <paramref name="totalPages"/>), all free.</summary>
    public ExtentAllocator(long totalPages)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(totalPages);
        TotalPages = totalPages;
        if (totalPages > 0)
        {
            root = new Node(0, totalPages, NextPriority());
            FreePages = totalPages;
            ExtentCount = 1;
        }
    }

    public long TotalPages { get; }

    public long FreePages { get; private set; }

    /// <summary>Number of free extents (the n of O(log n)).</summary>
    public int ExtentCount { get; private set; }

    /// <summary>The longest free run, in pages.</summary>
    public long LargestFreeExtent => root?.MaxLength ?? 0;

    /// <summary>Takes the lowest-addressed run of <paramref name="pages"/> free pages; false when none is long enough (or pages is 0).</summary>
    public bool TryAllocate(long pages, out long start)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(pages);
        if (pages == 0 || root is null || root.MaxLength < pages)
        {
            start = -1;
            return false;
        }
        root = TakeFirstFit(root, pages, out start);
        FreePages -= pages;
        return true;
    }

    /// <summary>Returns a run to the pool. Throws when any of it is already free or outside the pool (a double free).</summary>
    public void Free(long start, long pages)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(start);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(pages);
        if (start + pages > TotalPages)
        {
            throw new ArgumentOutOfRangeException(nameof(pages), $"pages [{start}, {start + pages}) run past the pool's {TotalPages}");
        }

        Split(root, start, out Node? below, out Node? above);
        Node? predecessor = Rightmost(below);
        Node? successor = Leftmost(above);
        if ((predecessor is not null && predecessor.End > start) || (successor is not null && successor.Start < start + pages))
        {
            root = Merge(below, above);
            throw new InvalidOperationException($"pages [{start}, {start + pages}) are already free");
        }

        long newStart = start;
        long newLength = pages;
        if (predecessor is not null && predecessor.End == start)
        {
            below = RemoveRightmost(below!);
            newStart = predecessor.Start;
            newLength += predecessor.Length;
            ExtentCount--;
        }
        if (successor is not null && successor.Start == start + pages)
        {
            above = RemoveLeftmost(above!);
            newLength += successor.Length;
            ExtentCount--;
        }
        root = Merge(Merge(below, new Node(newStart, newLength, NextPriority())), above);
        ExtentCount++;
        FreePages += pages;
    }

    /// <summary>The free extents in address order (for tests and diagnostics; O(n)).</summary>
    public IEnumerable<(long Start, long Length)> FreeExtents()
    {
        var stack = new Stack<Node>();
        for (Node? node = root; node is not null || stack.Count > 0;)
        {
            while (node is not null)
            {
                stack.Push(node);
                node = node.Left;
            }
            node = stack.Pop();
            yield return (node.Start, node.Length);
            node = node.Right;
        }
    }

    private Node? TakeFirstFit(Node node, long pages, out long start)
    {
        if (node.Left is not null && node.Left.MaxLength >= pages)
        {
            node.Left = TakeFirstFit(node.Left, pages, out start);
        }
        else if (node.Length >= pages)
        {
            start = node.Start;
            if (node.Length == pages)
            {
                ExtentCount--;
                return Merge(node.Left, node.Right);
            }
            // Shrinking from the front keeps the address order intact.
            node.Start += pages;
            node.Length -= pages;
        }
        else
        {
            node.Right = TakeFirstFit(node.Right!, pages, out start);
        }
        Update(node);
        return node;
    }

    private static void Split(Node? node, long key, out Node? below, out Node? above)
    {
        if (node is null)
        {
            below = above = null;
            return;
        }
        if (node.Start < key)
        {
            Split(node.Right, key, out Node? rightBelow, out above);
            node.Right = rightBelow;
            below = node;
        }
        else
        {
            Split(node.Left, key, out below, out Node? leftAbove);
            node.Left = leftAbove;
            above = node;
        }
        Update(node);
    }

    private static Node? Merge(Node? left, Node? right)
    {
        if (left is null)
        {
            return right;
        }
        if (right is null)
        {
            return left;
        }
        if (left.Priority > right.Priority)
        {
            left.Right = Merge(left.Right, right);
            Update(left);
            return left;
        }
        right.Left = Merge(left, right.Left);
        Update(right);
        return right;
    }

    private static Node? RemoveRightmost(Node node)
    {
        if (node.Right is null)
        {
            return node.Left;
        }
        node.Right = RemoveRightmost(node.Right);
        Update(node);
        return node;
    }

    private static Node? RemoveLeftmost(Node node)
    {
        if (node.Left is null)
        {
            return node.Right;
        }
        node.Left = RemoveLeftmost(node.Left);
        Update(node);
        return node;
    }

    private static Node? Rightmost(Node? node)
    {
        while (node?.Right is not null)
        {
            node = node.Right;
        }
        return node;
    }

    private static Node? Leftmost(Node? node)
    {
        while (node?.Left is not null)
        {
            node = node.Left;
        }
        return node;
    }

    private static void Update(Node node) =>
        node.MaxLength = Math.Max(node.Length, Math.Max(node.Left?.MaxLength ?? 0, node.Right?.MaxLength ?? 0));

    // xorshift32: deterministic priorities, so a run can be replayed.
    private uint NextPriority()
    {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        return seed;
    }
}
