using Microsoft.Extensions.Logging.Abstractions;
using Rstmem.Interop;
using Rstmem.Daemon.Backends;
using Rstmem.Daemon.Broker;
using Rstmem.Daemon.Hosting;
using Rstmem.Interop.Kernel;
using Rstmem.Model;

namespace Rstmem.Tests.Support;

/// <summary>A broker on the model, listening on a temporary socket, its loop on a thread of its own.</summary>
internal sealed class BrokerFixture : IDisposable
{
    private readonly Thread loop;
    private readonly ListenerSocket listener;
    private readonly string directory;

    public BrokerFixture(string generation = "mainline", BrokerLimits? limits = null, Action<ModelOptions>? configure = null)
    {
        directory = Directory.CreateTempSubdirectory("rstmemd-test-").FullName;
        SocketPath = Path.Combine(directory, "rstmemd.sock");
        var options = new ModelOptions { Generation = generation };
        configure?.Invoke(options);
        Model = new ModelKernel(options);
        Selection = BackendProbe.Select("model", LinuxKernel.Instance, () => Model, [], new Dictionary<string, string>());
        listener = ListenerSocket.Bind(SocketPath, Convert.ToUInt32("660", 8), null);
        Server = DaemonComposition.Broker(listener.Fd, Selection, limits ?? new BrokerLimits(4096, 1L << 40, 64), NullLoggerFactory.Instance, () => { });
        loop = new Thread(() => Server.Run(TimeSpan.FromSeconds(1))) { IsBackground = true, Name = "test-broker" };
        loop.Start();
        Server.Listening.Wait();
    }

    public string SocketPath { get; }

    public ModelKernel Model { get; }

    public BackendSelection Selection { get; }

    public BrokerServer Server { get; }

    public void Dispose()
    {
        Server.RequestStop();
        loop.Join();
        Server.Dispose();
        listener.Dispose();
        Selection.Dispose();
        Directory.Delete(directory, recursive: true);
    }
}
