namespace Rstmem.Tests.Support;

/// <summary>
/// How long a test waits for something that should happen before it fails
/// instead of hanging. A bound on a hang, never a pass/fail criterion: generous,
/// because the machines that run these tests are busy.
/// </summary>
internal static class GiveUp
{
    public static readonly TimeSpan After = TimeSpan.FromSeconds(60);

    public static int Milliseconds => (int)After.TotalMilliseconds;
}
