using System.Globalization;

namespace Rstmem.Benchmarks;

/// <summary>
/// The machine's count of the interrupts one CPU sends another to wake a
/// task there or run a function there (/proc/interrupts: "Rescheduling
/// interrupts" and "Function call interrupts", x86's RES and CAL, arm64's
/// IPI0 and IPI1 by the same descriptions), summed over every CPU. On the
/// 2-vCPU build VM each costs the order of 20 us, and the per-buffer
/// teardown of an inotify watch sends them (see the README's broker
/// benchmark): counted around a run, they show which server pays that.
/// </summary>
internal static class CrossCpuInterrupts
{
    private static readonly string[] Descriptions = ["Rescheduling interrupts", "Function call interrupts"];

    /// <summary>The count now, or null when /proc/interrupts cannot be read or lists neither row.</summary>
    public static long? Read()
    {
        string[] lines;
        try
        {
            lines = File.ReadAllLines("/proc/interrupts");
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
        long total = 0;
        bool found = false;
        foreach (string line in lines)
        {
            if (!Descriptions.Any(d => line.EndsWith(d, StringComparison.Ordinal)))
            {
                continue;
            }
            found = true;
            // "RES:  1234  5678  Rescheduling interrupts": the counts follow the label, one per CPU.
            foreach (string field in line.Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1))
            {
                if (!long.TryParse(field, NumberStyles.None, CultureInfo.InvariantCulture, out long count))
                {
                    break;
                }
                total += count;
            }
        }
        return found ? total : null;
    }
}
