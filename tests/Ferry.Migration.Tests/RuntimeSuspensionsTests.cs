using System.Diagnostics;
using Ferry.Migration.Metrics;
using Xunit;

namespace Ferry.Migration.Tests;

/// <summary>The record of the runtime's stop-the-world pauses that migration reports carry.</summary>
[Collection(nameof(RuntimeGc))]
public sealed class RuntimeSuspensionsTests
{
    [Fact]
    public async Task A_forced_collection_is_recorded_as_a_gc_suspension()
    {
        RuntimeSuspensions listener = RuntimeSuspensions.Process;

        // The runtime hands its events to an in-process listener asynchronously; the tests beside
        // this one collect too, so wait for a full collection in the window, not for any. Other
        // test classes run migrations at the same time, and their no-GC regions (GcQuiet) and
        // collections share this process's collector: CI once saw a forced collection leave no
        // collection in its window (3 other suspensions, 6 ms), so a few attempts are allowed.
        RuntimeSuspensionReport seen = new(0, 0, 0, 0, 0);
        for (int attempt = 0; attempt < 5 && seen.FullGcCount == 0; attempt++)
        {
            long from = Stopwatch.GetTimestamp();
            GC.Collect(2, GCCollectionMode.Forced, blocking: true);
            long to = Stopwatch.GetTimestamp();

            long margin = Stopwatch.Frequency / 20;
            seen = listener.Summarize(from - margin, to + margin);
            for (int i = 0; i < 40 && seen.FullGcCount == 0; i++)
            {
                await Task.Delay(50);
                seen = listener.Summarize(from - margin, to + margin);
            }
        }

        Assert.True(seen.GcCount >= 1, $"a blocking gen2 collection stops every thread: {seen}");
        Assert.True(seen.GcMs > 0 && seen.GcMs <= seen.TotalMs && seen.MaxMs <= seen.TotalMs, seen.ToString());
        Assert.True(seen.FullGcCount >= 1, $"the collection was of generation 2: {seen}");
    }

    [Fact]
    public void A_window_counts_only_what_overlaps_it_clipped_to_its_ends()
    {
        RuntimeSuspensions listener = RuntimeSuspensions.Process;
        long f = Stopwatch.Frequency / 1000;   // ticks per ms
        long t0 = Stopwatch.GetTimestamp() + (3600 * Stopwatch.Frequency);   // an hour ahead: nothing real is there
        listener.Record(t0, t0 + (10 * f), reason: 1, generation: 2);   // a full GC, 10 ms
        listener.Record(t0 + (20 * f), t0 + (24 * f), reason: 0); // other work, 4 ms
        listener.Record(t0 + (100 * f), t0 + (110 * f), reason: 9);

        RuntimeSuspensionReport whole = listener.Summarize(t0, t0 + (50 * f));
        Assert.Equal(2, whole.Count);
        Assert.Equal(1, whole.GcCount);
        Assert.Equal(14, whole.TotalMs, 3);
        Assert.Equal(10, whole.MaxMs, 3);
        Assert.Equal(10, whole.GcMs, 3);
        Assert.Equal(1, whole.FullGcCount);

        RuntimeSuspensionReport clipped = listener.Summarize(t0 + (5 * f), t0 + (22 * f));
        Assert.Equal(2, clipped.Count);
        Assert.Equal(7, clipped.TotalMs, 3);   // 5 of the GC, 2 of the other
        Assert.Equal(5, clipped.GcMs, 3);

        Assert.Equal(0, listener.Summarize(t0 + (30 * f), t0 + (90 * f)).Count);
    }
}
