using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Interop.Uapi;
namespace Rstmem.Model;

/// <summary>
/// A TEE device's id space (teedev->idr): idr_alloc(&amp;idr, NULL, 1, 0)
/// returns the lowest free id from 1, so ids are reused once released. One
/// per device, shared by SHM_ALLOC, SHM_REGISTER(_FD) and RSTMEM_ALLOC.
/// </summary>
public sealed class IdAllocator
{
    private readonly SortedSet<int> released = [];
    private readonly Lock gate = new();
    private int next = 1;

    public int Allocate()
    {
        lock (gate)
        {
            if (released.Count > 0)
            {
                int id = released.Min;
                released.Remove(id);
                return id;
            }
            return next++;
        }
    }

    public void Release(int id)
    {
        lock (gate)
        {
            if (id <= 0 || id >= next || !released.Add(id))
            {
                throw new InvalidOperationException($"id {id} is not allocated");
            }
            // Keep the set small: fold released ids at the top back into "next".
            while (next > 1 && released.Remove(next - 1))
            {
                next--;
            }
        }
    }

    public int InUse
    {
        get
        {
            lock (gate)
            {
                return next - 1 - released.Count;
            }
        }
    }
}
