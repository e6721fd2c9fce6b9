using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Rstmem.Daemon.Backends;
using Rstmem.Daemon.Broker;

namespace Rstmem.Daemon.Hosting;

/// <summary>
/// Runs the broker's loop on its own thread for the host's lifetime:
/// READY=1 once it polls the listening socket; on SIGTERM/SIGINT, STOPPING=1,
/// no new connections, queued replies sent, exit within the host's 2 s.
/// </summary>
internal sealed class BrokerService(BrokerServer server, BackendSelection backend, ListenerSocket listener, SystemdNotifier notifier,
    IHostApplicationLifetime lifetime, ILogger<BrokerService> logger) : IHostedService
{
    private static readonly TimeSpan DrainTime = TimeSpan.FromSeconds(1);
    private Thread? loop;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        loop = new Thread(Run) { Name = "rstmemd-broker", IsBackground = true };
        loop.Start();
        server.Listening.Wait(cancellationToken);
        string status = $"{backend.KindName}, {backend.Heaps.Count} heap(s), listening on {listener.Path}";
        notifier.Ready(status);
        logger.LogInformation("rstmemd ready: {Status}", status);
        return Task.CompletedTask;
    }

    private void Run()
    {
        try
        {
            server.Run(DrainTime);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            logger.LogCritical(e, "the broker loop failed: {Message}", e.Message);
            Environment.ExitCode = 1;
            lifetime.StopApplication();
        }
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        notifier.Stopping("stopping");
        server.RequestStop();
        loop?.Join(DrainTime + TimeSpan.FromMilliseconds(500));
        logger.LogInformation("rstmemd stopped");
        return Task.CompletedTask;
    }
}
