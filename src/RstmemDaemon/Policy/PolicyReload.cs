using Microsoft.Extensions.Logging;
using Rstmem.Daemon.Hosting;

namespace Rstmem.Daemon.Policy;

/// <summary>
/// SIGHUP (<see cref="DaemonLifetime.Reload"/>): reads the configuration again and, when it is valid, swaps in its access policy;
/// connected clients stay connected. An invalid file keeps the current policy and logs each
/// problem. Only the Access section takes effect this way; other keys need a restart.
/// </summary>
public static class PolicyReload
{
    /// <summary>One reload; true when the new policy is in place.</summary>
    /// <param name="load">Loads and validates the configuration as at startup; null when invalid, with the problems written to its argument.</param>
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
