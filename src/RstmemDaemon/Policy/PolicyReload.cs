using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Rstmem.Daemon.Hosting;

namespace Rstmem.Daemon.Policy;

/// <summary>
/// SIGHUP: reads the configuration again and, when it is valid, swaps in its access policy;
/// connected clients stay connected. An invalid file keeps the current policy and logs each
/// problem. Only the Access section takes effect this way; other keys need a restart.
/// </summary>
public static class PolicyReload
{
    /// <param name="load">Loads and validates the configuration as at startup; null when invalid (it reports the problems to <paramref name="problems"/>).</param>
    public static IDisposable OnHangup(Func<TextWriter, DaemonOptions?> load, PolicyReference target, uint daemonUid, ILogger log) =>
        PosixSignalRegistration.Create(PosixSignal.SIGHUP, context =>
        {
            context.Cancel = true; // SIGHUP's default would end the process
            Reload(load, target, daemonUid, log);
        });

    /// <summary>One reload; true when the new policy is in place.</summary>
    public static bool Reload(Func<TextWriter, DaemonOptions?> load, PolicyReference target, uint daemonUid, ILogger log)
    {
        ArgumentNullException.ThrowIfNull(load);
        ArgumentNullException.ThrowIfNull(target);
        using var problems = new StringWriter();
        DaemonOptions? options = load(problems);
        if (options is null)
        {
            foreach (string line in problems.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries))
            {
                log.LogError("reload refused, the current access policy stays: {Problem}", line.TrimEnd('\r'));
            }
            return false;
        }
        AccessPolicy next = options.AccessPolicy(daemonUid);
        target.Swap(next);
        log.LogInformation("reloaded the access policy: {Rules} rule(s), pool share {Share}%", next.Rules?.Count ?? 0, next.SharePercent);
        return true;
    }
}
