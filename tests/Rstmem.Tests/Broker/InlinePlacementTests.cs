using Rstmem.Daemon.Broker;
using Rstmem.Daemon.Client;
using Rstmem.Tests.Support;

namespace Rstmem.Tests.Broker;

/// <summary>
/// A heap whose allocations have been quick runs them on the loop's thread
/// (no hand-off to its worker and back); two slow allocations in a row there
/// send it back to its worker, and unless it had settled it then needs twice
/// the streak. The limit is the
/// test's: unreachable (every allocation quick) or zero (every one slow), so
/// nothing here depends on how long an allocation takes.
/// </summary>
public sealed class InlinePlacementTests
{
    private const string Loop = "test-broker";
    private const string Worker = "alloc system";

    [Fact]
    public void A_heap_moves_to_the_loop_after_a_streak_of_quick_allocations_and_back_after_a_slow_one()
    {
        var placement = new InlinePlacement();
        for (int i = 1; i < InlinePlacement.FirstStreak; i++)
        {
            placement.Ran(quick: true);
            Assert.False(placement.Inline, $"inline after {i} quick allocations");
        }
        placement.Ran(quick: false); // a slow one on the worker starts the streak again
        for (int i = 1; i < InlinePlacement.FirstStreak; i++)
        {
            placement.Ran(quick: true);
        }
        Assert.False(placement.Inline);
        placement.Ran(quick: true);
        Assert.True(placement.Inline);

        placement.Ran(quick: false); // one slow allocation on the loop is not enough
        Assert.True(placement.Inline);
        placement.Ran(quick: true);
        placement.Ran(quick: false);
        Assert.True(placement.Inline);
        placement.Ran(quick: false);
        Assert.False(placement.Inline);
        Assert.Equal(2 * InlinePlacement.FirstStreak, placement.Needed);
    }

    [Fact]
    public void A_heap_sent_back_after_settling_on_the_loop_needs_only_the_first_streak_again()
    {
        var placement = new InlinePlacement();
        Promote(placement);
        SendBack(placement);
        Assert.Equal(2 * InlinePlacement.FirstStreak, placement.Needed);
        Promote(placement);
        for (int i = 0; i < InlinePlacement.SettledRun; i++)
        {
            placement.Ran(quick: true);
        }
        SendBack(placement);
        Assert.Equal(InlinePlacement.FirstStreak, placement.Needed);
    }

    private static void Promote(InlinePlacement placement)
    {
        while (!placement.Inline)
        {
            placement.Ran(quick: true);
        }
    }

    private static void SendBack(InlinePlacement placement)
    {
        for (int i = 0; i < InlinePlacement.SlowInARow; i++)
        {
            placement.Ran(quick: false);
        }
        Assert.False(placement.Inline);
    }

    [Fact]
    public void The_streak_needed_doubles_each_time_the_heap_is_sent_back_before_settling_up_to_its_maximum()
    {
        var placement = new InlinePlacement();
        int expected = InlinePlacement.FirstStreak;
        for (int round = 0; round < 12; round++)
        {
            for (int i = 0; i < expected; i++)
            {
                Assert.False(placement.Inline, $"round {round}: inline after {i} of {expected}");
                placement.Ran(quick: true);
            }
            Assert.True(placement.Inline, $"round {round}: not inline after {expected}");
            SendBack(placement);
            expected = Math.Min(expected * 2, InlinePlacement.MaximumStreak);
            Assert.Equal(expected, placement.Needed);
        }
        Assert.Equal(InlinePlacement.MaximumStreak, placement.Needed);
    }

    [Fact]
    public void The_broker_runs_a_quick_heap_s_allocations_on_its_loop_and_a_slow_one_s_on_the_heap_s_worker()
    {
        using var broker = new BrokerFixture("mainline");
        var threads = new List<string?>();
        broker.Model.InjectLatency("system", () =>
        {
            lock (threads)
            {
                threads.Add(Thread.CurrentThread.Name);
            }
        });
        using RstmemClient client = RstmemClient.Connect(broker.SocketPath);
        void Allocate(int count)
        {
            for (int i = 0; i < count; i++)
            {
                using AllocatedBuffer buffer = client.Allocate("system", BrokerFixture.Page, AllocTarget.Heap);
            }
        }

        broker.Server.Workers.InlineLimitTicks = long.MaxValue; // every allocation is quick
        Allocate(InlinePlacement.FirstStreak + 2);
        broker.Server.Workers.InlineLimitTicks = 0; // every allocation is slow
        Allocate(3);
        broker.Server.Workers.InlineLimitTicks = long.MaxValue;
        Allocate(2 * InlinePlacement.FirstStreak + 1);

        string?[] expected =
        [
            .. Enumerable.Repeat(Worker, InlinePlacement.FirstStreak), // on probation
            Loop, Loop,
            Loop, Loop, // two slow on the loop: back to the worker
            Worker, // slow there too: the streak starts at its next
            .. Enumerable.Repeat(Worker, 2 * InlinePlacement.FirstStreak), // twice the streak now
            Loop,
        ];
        lock (threads)
        {
            Assert.Equal(expected, threads);
        }
        Assert.Equal(5, broker.Server.Workers.RanInline);
    }
}
