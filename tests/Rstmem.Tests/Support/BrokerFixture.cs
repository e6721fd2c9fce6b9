using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Rstmem.Interop;
using Rstmem.Daemon.Backends;
using Rstmem.Daemon.Broker;
using Rstmem.Daemon.Hosting;
using Rstmem.Interop.Kernel;
using Rstmem.Model;

namespace Rstmem.Tests.Support;

/// <summary>
/// A broker on the model, listening on a temporary socket, its loop on a thread of its own.
/// The model and the limits are this fixture's own, stated below: tests assert these
/// numbers, never ModelOptions' or LimitsOptions' defaults, so changing a default
/// breaks no test here.
/// </summary>
internal sealed class BrokerFixture : IDisposable
{
    /// <summary>The secure-video use case: a static carve-out.</summary>
    public const long SecureVideoBytes = 16L << 20;

    /// <summary>The trusted-ui use case: a static carve-out.</summary>
    public const long TrustedUiBytes = 8L << 20;

    /// <summary>The secure-video-record use case: an OP-TEE dynamic pool lending chunks of this size; its sizes are not known until it lends.</summary>
    public const long RecordChunkBytes = 8L << 20;

    /// <summary>The CMA heap.</summary>
    public const string CmaHeapName = "reserved";

    public const long CmaHeapBytes = 8L << 20;

    public const long SystemHeapBytes = 256L << 20;

    /// <summary>A heap per use case (3), the system heap and the CMA heap, in every generation.</summary>
    public const int HeapCount = 5;

    private readonly Thread loop;
    private readonly ListenerSocket listener;
    private readonly string directory;

    public BrokerFixture(string generation = "mainline", BrokerLimits? limits = null, Action<ModelOptions>? configure = null, ILoggerFactory? loggers = null)
    {
        directory = Directory.CreateTempSubdirectory("rstmemd-test-").FullName;
        SocketPath = Path.Combine(directory, "rstmemd.sock");
        ModelOptions options = ModelConfiguration(generation);
        configure?.Invoke(options);
        Model = new ModelKernel(options);
        Selection = BackendProbe.Select("model", LinuxKernel.Instance, () => Model, [], new Dictionary<string, string>());
        listener = ListenerSocket.Bind(SocketPath, Convert.ToUInt32("660", 8), null);
        Server = DaemonComposition.Broker(listener.Fd, Selection, limits ?? DefaultLimits, loggers ?? NullLoggerFactory.Instance, () => { });
        loop = new Thread(() => Server.Run(TimeSpan.FromSeconds(1))) { IsBackground = true, Name = "test-broker" };
        loop.Start();
        Server.Listening.Wait();
    }

    /// <summary>
    /// The allocation granularity: the machine's page size, which the daemon reports in
    /// HELLO (4 KiB on x86-64, 16 or 64 KiB on some arm64 boards).
    /// </summary>
    public static long Page => (long)Interop.Kernel.Page.Size;

    /// <summary>Limits far above anything a test allocates, unless a test passes its own.</summary>
    public static BrokerLimits DefaultLimits { get; } = new(MaxBuffersPerUser: 4096, MaxBytesPerUser: 1L << 40, MaxConnectionsPerUser: 64);

    /// <summary>The model this fixture runs, every setting stated.</summary>
    public static ModelOptions ModelConfiguration(string generation) => new()
    {
        Generation = generation,
        SystemHeapSize = ByteSize.Format(SystemHeapBytes),
        CmaHeapName = CmaHeapName,
        CmaHeapSize = ByteSize.Format(CmaHeapBytes),
        TeeShmPool = true,
        UseCases = new(StringComparer.Ordinal)
        {
            ["secure-video"] = new() { Enabled = true, Kind = "static", Size = ByteSize.Format(SecureVideoBytes) },
            ["trusted-ui"] = new() { Enabled = true, Kind = "static", Size = ByteSize.Format(TrustedUiBytes) },
            ["secure-video-record"] = new() { Enabled = true, Kind = "dynamic", Size = ByteSize.Format(RecordChunkBytes) },
        },
    };

    /// <summary><paramref name="bytes"/> rounded up to whole pages, as the daemon hands them out.</summary>
    public static long PageRounded(long bytes) => (long)Interop.Kernel.Page.Align((ulong)bytes);

    public string SocketPath { get; }

    public ModelKernel Model { get; }

    public BackendSelection Selection { get; }

    public BrokerServer Server { get; }

    public void Dispose()
    {
        Server.RequestStop();
        if (!loop.Join(GiveUp.After))
        {
            // Its sockets and buffers stay with the process: disposing them under a running loop would crash it.
            throw new TimeoutException($"the broker loop did not stop within {GiveUp.After.TotalSeconds} s of RequestStop");
        }
        Server.Dispose();
        listener.Dispose();
        Selection.Dispose();
        Directory.Delete(directory, recursive: true);
    }
}
