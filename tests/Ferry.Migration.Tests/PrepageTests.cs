using System.Diagnostics;
using Ferry.Machine.Memory;
using Ferry.Migration.Mechanisms;
using Xunit;

namespace Ferry.Migration.Tests;

/// <summary>
/// Pre-paging that learns: the destination's window adapts to the hit rate it measures per
/// distance from the fault, and the source's push expands from recent fault pivots and
/// follows strides. Synthetic fault streams, a synthetic clock: nothing here is timed.
/// </summary>
public class PrepageTests
{
    private const int PageCount = 1 << 14;
    private static readonly long Horizon = (long)(PrepageWindow.Horizon.TotalSeconds * Stopwatch.Frequency);

    /// <summary>A destination's page facts and a guest that touches what <see cref="Touch"/> says.</summary>
    private sealed class Guest
    {
        public readonly PageBitmap Absent = new(PageCount);
        public readonly PageBitmap Accessed = new(PageCount);
        public long Now = 1;

        public Guest() => Absent.SetAll();

        /// <summary>One fault on <paramref name="page"/>: the window is chosen, its neighbours arrive, the guest touches those <paramref name="touches"/> picks.</summary>
        public (int First, int End) Fault(PrepageWindow w, int page, Func<int, bool> touches)
        {
            (int first, int end) = w.Choose(page, Now);
            for (int p = first; p < end; p++)
            {
                if (p != page && Absent.Get(p))
                {
                    w.Requested(p, page);
                }
            }

            w.Sent(page, first, end, Now);
            for (int p = first; p < end; p++)
            {
                Absent.Clear(p);
                if (p == page || touches(p - page))
                {
                    Accessed.Set(p);
                }
            }

            Now += Horizon + 1; // the next fault comes after this window's horizon: it is evaluated then
            return (first, end);
        }
    }

    private static PrepageWindow Window(Guest g, int locality = 64, long linkTicks = 100, long stallTicks = 300)
    {
        var w = new PrepageWindow(g.Absent, g.Accessed, locality);
        w.NoteLinkTime(linkTicks);
        w.NoteStall(stallTicks);
        return w;
    }

    [Fact]
    public void Threshold_is_a_pages_link_time_over_a_faults_stall()
    {
        var g = new Guest();
        Assert.Equal(PrepageWindow.DefaultThreshold, new PrepageWindow(g.Absent, g.Accessed, 16).Threshold);
        Assert.Equal(1.0 / 3, Window(g, 16, 100, 300).Threshold, 6);
        Assert.Equal(PrepageWindow.MinThreshold, Window(g, 16, 1, 1_000_000).Threshold); // an unlimited link: never free
        var w = Window(g, 16, 100, 300);
        w.NoteLinkTime(200); // a running mean
        Assert.Equal((100 + (100.0 / 16)) / 300, w.Threshold, 6);
    }

    [Fact]
    public void Hits_are_booked_per_distance_once_the_horizon_has_passed_and_pages_not_here_by_then_are_misses()
    {
        var g = new Guest();
        var w = Window(g, 16); // 4 before, 11 after
        (int first, int end) = w.Choose(1000, g.Now);
        Assert.Equal((998, 1005), (first, end)); // a fresh window: 2 before, 4 after
        for (int p = first; p < end; p++)
        {
            if (p != 1000)
            {
                w.Requested(p, 1000);
            }
        }

        w.Sent(1000, first, end, g.Now);
        foreach (int p in new[] { 1000, 1001, 1002, 999 })
        {
            g.Absent.Clear(p);
        }

        g.Accessed.Set(1000);
        g.Accessed.Set(1001); // +1 touched; +2 and -1 arrived, untouched; the rest never arrived
        w.Sent(5000, 5000, 5001, g.Now + Horizon - 1); // before the horizon: nothing booked yet
        Assert.Equal(0, w.Evaluated(1));
        w.Sent(6000, 6000, 6001, g.Now + Horizon);
        Assert.Equal((1, 1), (w.Evaluated(1), w.Hits(1)));
        Assert.Equal((1, 0), (w.Evaluated(2), w.Hits(2)));
        Assert.Equal((1, 0), (w.Evaluated(-1), w.Hits(-1)));
        Assert.Equal((1, 0), (w.Evaluated(3), w.Hits(3))); // never arrived: no use
        Assert.Equal(0, w.Evaluated(5)); // never requested
        Assert.True(w.HitRate(1) > 0.5 && w.HitRate(2) < 0.5, $"{w.HitRate(1)} {w.HitRate(2)}");
        Assert.Equal(w.HitRate(4), w.HitRate(7)); // not measured: as the farthest distance measured on its side
        Assert.Equal(w.HitRate(-2), w.HitRate(-3));
    }

    /// <summary>
    /// The fixed window of a fault on one of RAM's last pages shifts to stay inside it, so it
    /// reaches farther before the fault than the adaptive window measures: evaluating it books
    /// only the distances measured (it threw IndexOutOfRangeException on the hart's thread once
    /// its horizon passed, a fault on the last pages of RAM).
    /// </summary>
    [Fact]
    public void A_window_shifted_at_the_end_of_ram_is_booked_within_the_distances_measured()
    {
        var g = new Guest();
        var w = Window(g, 4); // 1 before, 2 after
        int last = PageCount - 1;
        for (int p = last - 3; p < last; p++)
        {
            w.Requested(p, last); // [last - 3, last + 1): three pages before it
        }

        w.Sent(last, last - 3, last + 1, g.Now);
        g.Accessed.Set(last - 1);
        g.Accessed.Set(last - 3);
        w.Sent(0, 0, 1, g.Now + Horizon); // its horizon passed: evaluated now
        Assert.Equal((1, 1), (w.Evaluated(-1), w.Hits(-1)));
        Assert.Equal(-1, Assert.Single(w.ByDistance()).Distance);
    }

    [Fact]
    public void A_scattered_fault_stream_narrows_the_window_to_the_page_alone_but_for_its_probes()
    {
        var g = new Guest();
        var w = Window(g);
        var windows = new List<(int Before, int After)>();
        for (int i = 0; i < 200; i++)
        {
            g.Fault(w, 200 + (i * 79), _ => false);
            windows.Add((w.Before, w.After));
        }

        Assert.Equal((2, 4), windows[0]);
        for (int i = 100; i < windows.Count; i++)
        {
            // The page alone, but for a probe a step past it in every ProbeEvery windows.
            Assert.Equal(i % PrepageWindow.ProbeEvery == PrepageWindow.ProbeEvery - 1 ? (2, 4) : (0, 0), windows[i]);
        }

        Assert.True(w.Hits(1) == 0 && w.Evaluated(1) >= 20, $"{w.Evaluated(1)}");
    }

    [Fact]
    public void Neighbours_that_are_hit_widen_the_window_towards_them_only()
    {
        var g = new Guest();
        var w = Window(g);

        // First the guest scatters: the window closes.
        for (int i = 0; i < 100; i++)
        {
            g.Fault(w, 100 + (i * 83), _ => false);
        }

        Assert.Equal((0, 0), (w.Before, w.After));

        // Then it runs forward through memory (each touch past the window faults again, further on):
        // the probes find the next pages hit, and the window grows forward, step by step, to its bound.
        int page = 9000, atBound = 0, faults = 0;
        for (; faults < 300 && atBound < PrepageWindow.ProbeEvery; faults++)
        {
            (_, int end) = g.Fault(w, page, d => d > 0);
            atBound = w.After == w.MaxAfter ? atBound + 1 : 0;
            Assert.True(w.Before <= 2, $"{w.Before}"); // nothing behind the fault is touched: only probes reach back
            page = end + 1;
        }

        Assert.Equal(PrepageWindow.ProbeEvery, atBound); // a whole probe cycle at the bound
        Assert.Equal(0, w.Before);
        Assert.True(w.HitRate(5) > 0.8, $"{w.HitRate(5)}");
    }

    [Fact]
    public void A_distance_pays_when_its_hit_rate_beats_the_link_time_over_the_stall()
    {
        // The guest touches the page after the fault two times in five, nothing else.
        foreach ((long link, long stall, int after) in new[] { (100L, 300L, 1), (100L, 100L, 0) })
        {
            var g = new Guest();
            var w = Window(g, 16, link, stall);
            int i = 0;
            for (; i < 198; i++) // the last window is not a probe
            {
                g.Fault(w, 100 + (i * 40), d => d == 1 && i % 5 < 2);
            }

            // 0.4 is above 100/300 but below 100/100.
            Assert.Equal((0, after), (w.Before, w.After));
        }
    }

    // ---------------------------------------------------------------- remote pager

    [Fact]
    public void RemotePager_adaptive_window_follows_the_measured_hit_rate()
    {
        const int pageCount = 8192;
        using var memory = new GuestMemory(pageCount * Ferry.Machine.Memory.GuestMemory.PageSize);
        memory.Absent.SetAll();
        long now = 1;
        var pager = new RemotePager(memory, 64, adaptive: true, clock: () => now);
        var fixedPager = new RemotePager(memory, 16, clock: () => now);
        Assert.Equal(16, fixedPager.Prepage.MaxBefore + fixedPager.Prepage.MaxAfter + 1);

        // Scattered faults whose neighbours arrive untouched: the window falls to the page alone.
        var sizes = new List<int>();
        for (int i = 0; i < 64; i++)
        {
            int page = 64 + (i * 120);
            pager.PageNeeded(page, now);
            for (int p = Math.Max(0, page - 16); p < page + 48; p++)
            {
                memory.Absent.Clear(p);
            }

            memory.Accessed.Set(page);
            sizes.Add(pager.CurrentWindow);
            now += Horizon + 1;
        }

        Assert.Equal(7, sizes[0]); // 2 before, the page, 4 after
        Assert.Equal(1, sizes[^2]);
        Assert.True(pager.Prepage.Evaluated(1) >= 8 && pager.Prepage.Hits(1) == 0, $"{pager.Prepage.Evaluated(1)}");
    }

    // ---------------------------------------------------------------- push queue

    private static PageBitmap Pending(int n)
    {
        var b = new PageBitmap(n);
        b.SetAll();
        return b;
    }

    private static List<int> Drain(PushQueue q, int max)
    {
        var order = new List<int>();
        while (order.Count < max && q.Next() is int p && p >= 0)
        {
            order.Add(p);
        }

        return order;
    }

    [Fact]
    public void Push_expands_a_pivot_in_both_directions_four_after_for_each_before()
    {
        Assert.Equal(new[] { 1, -1, 2, 3, 4, 5, -2, 6, 7, 8 }, PushQueue.ExpansionOrder(8));
        Assert.Equal(80, PushQueue.ExpansionOrder(64).Length);
        Assert.Equal(Enumerable.Range(1, 64).Concat(Enumerable.Range(1, 16).Select(x => -x)).Order(), PushQueue.ExpansionOrder(64).Order());

        var q = new PushQueue(Pending(256), PushOrder.FaultNeighbourhood, 8);
        Assert.True(q.TryClaim(100)); // the fault server sent the page itself
        q.NoteFault(100);
        Assert.Equal(new[] { 101, 99, 102, 103, 104, 105, 98, 106, 107, 108, 0 }, Drain(q, 11));
    }

    [Fact]
    public void Push_returns_to_older_pivots_after_the_newest_one()
    {
        var q = new PushQueue(Pending(256), PushOrder.FaultNeighbourhood, 4); // +1, -1, +2, +3, +4
        q.NoteFault(50);
        Assert.True(q.TryClaim(50)); // faulted pages go as fault replies
        Assert.Equal(new[] { 51, 49 }, Drain(q, 2));
        Assert.True(q.TryClaim(52));
        q.NoteFault(52); // near 50: a run
        Assert.Equal(new[] { 53, 54, 55, 56 }, Drain(q, 4)); // 52's neighbourhood (51 went already, 52 is the fault's)
        Assert.Equal(new[] { 0, 1 }, Drain(q, 2)); // 50's rest (51..54) went with 52's: then the linear rest
        q.NoteFault(200);
        q.NoteFault(10);
        Assert.Equal(new[] { 11, 9, 12, 13, 14, 201, 199, 202, 203, 204 }, Drain(q, 10)); // newest first, then the one before
    }

    [Fact]
    public void Push_narrows_its_expansion_while_faults_scatter_and_widens_it_while_they_run_on()
    {
        const int n = 1 << 16;
        var q = new PushQueue(Pending(n), PushOrder.FaultNeighbourhood, 64);
        Assert.Equal(80, q.Expansion);
        for (int i = 0; i < 100; i++)
        {
            q.NoteFault(1000 + (i * 601 % 60_000));
            Drain(q, 1);
        }

        Assert.True(q.RunRate < 0.01, $"{q.RunRate}");
        Assert.Equal(2, q.Expansion); // +1 and -1: then the recency order

        for (int i = 0; i < 100; i++)
        {
            q.NoteFault(61_000 + (i * 8));
            Drain(q, 1);
        }

        Assert.True(q.RunRate > 0.95, $"{q.RunRate}");
        Assert.Equal(80, q.Expansion);
    }

    [Fact]
    public void Push_follows_a_stride_that_skips_pages_nobody_asked_for()
    {
        var q = new PushQueue(Pending(4096), PushOrder.FaultNeighbourhood, 4);
        foreach (int fault in new[] { 100, 110, 120 })
        {
            Assert.True(q.TryClaim(fault));
            q.NoteFault(fault);
        }

        List<int> order = Drain(q, PushQueue.StridePages + 2);
        Assert.Equal(Enumerable.Range(1, PushQueue.StridePages).Select(k => 120 + (10 * k)).Concat([121, 119]), order);

        // A guest running through memory whose windows took the pages between its faults: no stride.
        var run = new PushQueue(Pending(4096), PushOrder.FaultNeighbourhood, 4);
        foreach (int fault in new[] { 100, 110, 120 })
        {
            for (int p = fault; p < fault + 10; p++)
            {
                run.TryClaim(p);
            }

            run.NoteFault(fault);
        }

        Assert.Equal(new[] { 99, 0 }, Drain(run, 2)); // the neighbourhoods (all sent but 100's -1), then the rest
    }
}
