using Microsoft.Extensions.Logging;
using Rstmem.Daemon.Backends;
using Rstmem.Daemon.Broker;
using Rstmem.Interop;

namespace Rstmem.Daemon.Hosting;

/// <summary>
/// The one place the broker's objects are built and wired: the kernel's
/// release observer (of the kind the backend probe chose) feeds the ledger,
/// the ledger owns the limits, the server owns the ledger. `rstmemd serve`
/// and the tests build the broker here and nowhere else.
/// </summary>
public static class DaemonComposition
{
    public static BrokerServer Broker(SafeFd listener, BackendSelection backend, BrokerLimits limits, ILoggerFactory loggers,
        Action refreshHeaps, HeapDirectoryWatch? heapWatch = null)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(loggers);
        var ledger = new BufferLedger(backend.Kernel.ObserveReleases(backend.ReleaseSignal), limits);
        return new BrokerServer(listener, backend, ledger, loggers.CreateLogger("rstmemd.broker"), refreshHeaps,
            heapWatch?.Descriptor, heapWatch is null ? null : heapWatch.Drain);
    }
}
