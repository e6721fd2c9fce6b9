using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Rstmem.Interop;
using Rstmem.Interop.Uapi;
using Rstmem.Daemon.Broker;

namespace Rstmem.Daemon.Hosting;

/// <summary>
/// The daemon's lifetime, as systemd expects it of a Type=notify service:
/// the broker's loop runs on its own thread; READY=1 once it polls the
/// listening socket; SIGTERM or SIGINT send STOPPING=1 and stop it (no new
/// connections, queued replies sent for at most <see cref="DrainTime"/>);
/// SIGHUP calls the reload action, if any, and the loop keeps running.
/// Signals come through <see cref="PosixSignalRegistration"/>: no generic
/// host, so nothing but the broker starts before READY=1.
/// </summary>
internal sealed class DaemonLifetime(BrokerServer server, SystemdNotifier notifier, ILogger logger)
{
    public static readonly TimeSpan DrainTime = TimeSpan.FromSeconds(1);

    private int stopping;

    /// <summary>Called on SIGHUP, on the runtime's signal thread; it must be safe to run beside the loop.</summary>
    public Action? Reload { get; init; }

    /// <summary>Runs until a stop signal or a failure of the loop; the process's exit status.</summary>
    public int Run(string status)
    {
        Exception? failure = null;
        var loop = new Thread(() =>
        {
            try
            {
                server.Run(DrainTime);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                failure = e;
                server.Listening.Set(); // READY=1 is not sent: the wait below sees the loop gone
            }
        })
        { Name = "rstmemd-broker" };

        // A parent may have left SIGHUP ignored (nohup), which exec passes on, and
        // PosixSignalRegistration leaves an ignored SIGHUP ignored: the daemon would never
        // reload (ServeProcessTests). Its default comes back first, so the handler below takes
        // it. SIGTERM needs nothing: the runtime takes it whatever was inherited (the same test
        // starts the daemon with it ignored too). SIGINT keeps what it inherited: a shell
        // ignores it for the jobs it starts in the background, so that an interrupt at its
        // terminal does not reach them.
        Sys.TryRestoreDefaultAction(Signals.SIGHUP).ThrowIfError("signal(SIGHUP, SIG_DFL)");
        using PosixSignalRegistration term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);
        using PosixSignalRegistration interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
        using PosixSignalRegistration hangUp = PosixSignalRegistration.Create(PosixSignal.SIGHUP, OnHangUp);
        loop.Start();
        server.Listening.Wait();
        if (loop.IsAlive || failure is null)
        {
            notifier.Ready(status);
            logger.LogInformation("rstmemd ready: {Status}", status);
        }
        loop.Join();
        if (failure is not null)
        {
            logger.LogCritical(failure, "the broker loop failed: {Message}", failure.Message);
            return 1;
        }
        logger.LogInformation("rstmemd stopped");
        return 0;
    }

    private void Stop(PosixSignalContext context)
    {
        context.Cancel = true; // the process exits when the loop has drained, not now
        if (Interlocked.Exchange(ref stopping, 1) == 0)
        {
            notifier.Stopping("stopping");
            server.RequestStop();
        }
    }

    private void OnHangUp(PosixSignalContext context)
    {
        context.Cancel = true; // SIGHUP's default action would end the process
        notifier.Reloading();
        try
        {
            logger.LogInformation("SIGHUP: {Action}", Reload is null ? "nothing to reload" : "reloading the configuration");
            Reload?.Invoke();
        }
        finally
        {
            notifier.Ready("serving");
        }
    }
}
