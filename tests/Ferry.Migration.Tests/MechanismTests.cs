using System.Diagnostics;
using System.Numerics;
using CsCheck;
using Ferry.Machine.Board;
using Ferry.Machine.Memory;
using Ferry.Migration.Mechanisms;
using Ferry.Migration.Metrics;
using Ferry.Migration.Protocol;
using Ferry.Migration.Transport;
using Xunit;

namespace Ferry.Migration.Tests;

/// <summary>The migration's moving parts, one at a time: push queue, working-set estimator, digest, link shaper, remote pager.</summary>
public sealed class MechanismTests
{
    private const int PageSize = GuestMemory.PageSize;

    private static CancellationToken Timeout => new CancellationTokenSource(TimeSpan.FromSeconds(20)).Token;

    // ---------------------------------------------------------------- push queue

    private static PageBitmap Pending(int pageCount, IEnumerable<int>? pages = null)
    {
        var b = new PageBitmap(pageCount);
        if (pages is null)
        {
            b.SetAll();
        }
        else
        {
            foreach (int p in pages)
            {
                b.Set(p);
            }
        }

        return b;
    }

    private static List<int> Drain(PushQueue q, int max = int.MaxValue)
    {
        var order = new List<int>();
        for (int p = q.Next(); p >= 0; p = q.Next())
        {
            order.Add(p);
            if (order.Count == max)
            {
                break;
            }
        }

        return order;
    }

    [Fact]
    public void PushQueue_linear_order_is_ascending_and_ends_with_minus_one()
    {
        int[] pages = [130, 0, 3, 64, 5, 65, 199];
        var q = new PushQueue(Pending(200, pages), PushOrder.Linear, 16);
        Assert.Equal(7, q.Remaining);
        q.NoteFault(100); // no neighbourhood in linear order
        Assert.Equal(new[] { 0, 3, 5, 64, 65, 130, 199 }, Drain(q));
        Assert.Equal(0, q.Remaining);
        Assert.Equal(-1, q.Next());
    }

    [Fact]
    public void PushQueue_returns_every_pending_page_exactly_once_and_claims_are_exclusive()
    {
        const int n = 300;
        var q = new PushQueue(Pending(n), PushOrder.Linear, 0);
        Assert.True(q.TryClaim(7));
        Assert.False(q.TryClaim(7));
        Assert.True(q.TryClaim(299));
        Assert.Equal(n - 2, q.Remaining);

        List<int> first = Drain(q, 10);
        Assert.Equal(new[] { 0, 1, 2, 3, 4, 5, 6, 8, 9, 10 }, first);
        Assert.All(first, p => Assert.False(q.TryClaim(p)));
        Assert.Equal(n - 12, q.Remaining);
        Assert.True(q.TryClaim(150)); // a fault reply takes a page ahead of the push

        List<int> rest = Drain(q);
        List<int> all = [7, 299, 150, .. first, .. rest];
        Assert.Equal(n, all.Count);
        Assert.Equal(Enumerable.Range(0, n), all.Order());
        Assert.DoesNotContain(150, rest);
        Assert.Equal(0, q.Remaining);
        Assert.False(q.TryClaim(42));
        Assert.Equal(0, q.Remaining); // a failed claim does not count
    }

    [Fact]
    public void PushQueue_only_hands_out_pending_pages()
    {
        var q = new PushQueue(Pending(100, [10, 20]), PushOrder.FaultNeighbourhood, 16);
        Assert.False(q.TryClaim(11));
        Assert.Equal(2, q.Remaining);
        q.NoteFault(9);
        Assert.Equal(new[] { 10, 20 }, Drain(q));
    }

    [Fact]
    public void PushQueue_serves_the_fault_neighbourhood_first_then_the_rest_ascending()
    {
        const int n = 256, neighbourhood = 16;
        var q = new PushQueue(Pending(n), PushOrder.FaultNeighbourhood, neighbourhood);
        // The fault server took the faulted page and one page either side of it.
        Assert.True(q.TryClaim(100));
        Assert.True(q.TryClaim(103));
        Assert.True(q.TryClaim(98));
        q.NoteFault(100);

        List<int> order = Drain(q);
        // p+1 .. p+N and p-1 .. p-N/4, four after for each one before, without 103 and 98.
        int[] around = PushQueue.ExpansionOrder(neighbourhood).Select(o => 100 + o).Where(p => p is not (103 or 98)).ToArray();
        Assert.Equal([101, 99, 102, 104, 105, 106, 107, 108, 109, 97], around.Take(10));
        int[] rest = Enumerable.Range(0, n).Except([100, 103, 98, .. around]).ToArray();
        Assert.Equal([.. around, .. rest], order);
    }

    [Fact]
    public void PushQueue_neighbourhood_stays_inside_RAM_and_serves_the_latest_fault_first()
    {
        const int n = 256, neighbourhood = 16;
        var q = new PushQueue(Pending(n), PushOrder.FaultNeighbourhood, neighbourhood);
        Assert.Equal(new[] { 0, 1, 2, 3, 4 }, Drain(q, 5));

        // A fault near the end: nothing past the last page, and its N/4 before it.
        q.NoteFault(250);
        Assert.Equal(new[] { 251, 249, 252, 253, 254, 255, 248, 247, 246 }, Drain(q, 9));

        // Two faults before the push looks: the latest one first, then the one before. Neither
        // landed near a recent fault, so each gets a little less than the whole neighbourhood.
        q.NoteFault(10);
        q.NoteFault(60);
        int[] order = PushQueue.ExpansionOrder(neighbourhood);
        Assert.True(q.Next() == 61 && q.Expansion is > 2 and < 20, $"{q.Expansion}");
        int[] sixty = order.Take(q.Expansion).Select(o => 60 + o).ToArray();
        int[] ten = order.Take(q.Expansion).Select(o => 10 + o).ToArray();
        Assert.Equal([.. sixty.Skip(1), .. ten], Drain(q, sixty.Length - 1 + ten.Length));

        // Then the rest ascending, from where the linear sweep left off and around.
        List<int> rest = Drain(q);
        Assert.Equal(Enumerable.Range(5, n - 5).Except([.. Enumerable.Range(246, 10).Except([250]), .. sixty, .. ten]), rest);
        Assert.Equal(0, q.Remaining);
    }

    [Fact]
    public void PushQueue_with_recency_serves_recent_pages_before_the_linear_rest()
    {
        const int n = 128;
        var q = new PushQueue(Pending(n), PushOrder.FaultNeighbourhoodThenRecency, 8);
        q.SetRecency([90, 10, 127, 10, 45]);
        Assert.True(q.TryClaim(45)); // sent as a fault reply in the meantime
        Assert.Equal(new[] { 90, 10, 127, 0, 1, 2 }, Drain(q, 6));

        // A fault goes ahead of everything.
        q.NoteFault(50);
        Assert.Equal(new[] { 51, 49, 52, 53, 54, 55, 48, 56, 57, 58, 3, 4 }, Drain(q, 12));
        Assert.Equal(n - 3 - 1 - 3 - 10 - 2, q.Remaining);

        // Recency is ignored by an order that does not use it.
        var plain = new PushQueue(Pending(n), PushOrder.FaultNeighbourhood, 8);
        plain.SetRecency([90, 10]);
        Assert.Equal(new[] { 0, 1, 2 }, Drain(plain, 3));
    }

    [Fact]
    public void PushQueue_recency_pages_follow_the_fault_neighbourhood()
    {
        var q = new PushQueue(Pending(64), PushOrder.FaultNeighbourhoodThenRecency, 4);
        q.SetRecency([40, 2]);
        q.NoteFault(20);
        Assert.Equal(new[] { 21, 19, 22, 23, 24, 40, 2, 0, 1, 3 }, Drain(q, 10));
    }

    /// <summary>As the fault server does: each page claimed for its fault reply, then reported to the push.</summary>
    private static void Fault(PushQueue q, params int[] pages)
    {
        foreach (int page in pages)
        {
            Assert.True(q.TryClaim(page));
            q.NoteFault(page);
        }
    }

    [Fact]
    public void PushQueue_in_a_forward_sweep_reads_ahead_only_and_on_to_the_end_before_anything_behind()
    {
        const int n = 512;
        var q = new PushQueue(Pending(n), PushOrder.FaultNeighbourhoodThenRecency, 8);
        q.SetRecency([5, 50]);   // what the guest touched before the pause: behind the sweep
        Fault(q, 100, 109, 120);   // each a little ahead of the last (not one stride)

        List<int> order = Drain(q);
        Assert.True(q.InSweep);
        Assert.Equal(n - 3, order.Count);
        int end = order.IndexOf(n - 1);
        // Up to the end of RAM: only pages ahead of the pivots (none of the expansion's pages
        // behind them: 119, 118, 108, 107, 99, 98), then the recency order and the rest.
        Assert.All(order.Take(end + 1), p => Assert.True(p is > 100 and not (108 or 118 or 119), $"page {p} is behind the sweep"));
        Assert.Equal([121, 122, 123, 124, 125, 126, 127], order.Take(7));
        Assert.Equal(Enumerable.Range(128, n - 128), order.Skip(end - (n - 129)).Take(n - 128));
        Assert.Equal([5, 50], order.Skip(end + 1).Take(2));

        // Scattered faults are no sweep: their neighbourhoods go both ways.
        var scattered = new PushQueue(Pending(n), PushOrder.FaultNeighbourhood, 8);
        Fault(scattered, 300, 100, 400);

        Assert.Equal([401, 399], Drain(scattered, 2));
        Assert.False(scattered.InSweep);
    }

    [Fact]
    public void PushQueue_sweep_moves_its_read_ahead_to_each_newer_fault()
    {
        const int n = 1024;
        var q = new PushQueue(Pending(n), PushOrder.FaultNeighbourhood, 8);
        Fault(q, 100, 109, 120);

        List<int> first = Drain(q, 25);   // the pivots' pages ahead, then the read-ahead from 121 on
        Assert.True(q.InSweep && first.Max() < 135, string.Join(",", first));
        Fault(q, 135);   // the guest ran ahead of the read-ahead and faulted there
        List<int> next = Drain(q, 20);
        Assert.All(next, p => Assert.True(p > 135, $"page {p}: after a newer fault the read-ahead goes on from it"));
    }

    [Fact]
    public void PushQueue_sweep_that_wraps_round_reads_ahead_from_its_new_start()
    {
        const int n = 512;
        var q = new PushQueue(Pending(n), PushOrder.FaultNeighbourhood, 8);
        Fault(q, 300, 310, 321);

        Assert.True(q.Next() > 300 && q.InSweep);
        Fault(q, 20, 30, 41);   // the guest's next pass starts low

        List<int> rest = Drain(q);
        Assert.True(q.InSweep);
        // The new pivots' pages ahead first, the old sweep's pivots' rest after them, and the
        // read-ahead on from the newest fault, before anything behind the new pass.
        Assert.All(rest.Take(12), p => Assert.True(p is > 20 and < 100, $"page {p}: the push should follow the new pass"));
        Assert.True(rest.IndexOf(49) < rest.IndexOf(511), "the read-ahead continues from the new pass, not from the old one's cursor");
        Assert.True(rest.IndexOf(49) < rest.IndexOf(0));
        Assert.True(rest.IndexOf(99) < rest.IndexOf(19));
    }

    [Theory]
    [InlineData(PushOrder.Linear)]
    [InlineData(PushOrder.FaultNeighbourhood)]
    [InlineData(PushOrder.FaultNeighbourhoodThenRecency)]
    public async Task PushQueue_push_and_fault_server_racing_never_claim_a_page_twice(PushOrder order)
    {
        const int n = 200_000;
        int faultedTotal = 0, pushedTotal = 0;
        for (int round = 0; round < 3; round++)
        {
            var q = new PushQueue(Pending(n), order, 64);
            var rng = new Random(round);
            q.SetRecency(Enumerable.Range(0, 5000).Select(_ => rng.Next(n)).ToArray());
            var pushed = new List<int>(n);
            var faulted = new List<int>(n);
            using var start = new Barrier(2);

            Task push = Task.Run(() =>
            {
                start.SignalAndWait();
                for (int p = q.Next(); p >= 0; p = q.Next())
                {
                    pushed.Add(p);
                }
            });
            Task faults = Task.Run(() =>
            {
                var r = new Random(100 + round);
                start.SignalAndWait();
                while (q.Remaining > 0)
                {
                    // As the fault server: note the fault, claim the page, then its window.
                    int page = r.Next(n);
                    q.NoteFault(page);
                    for (int p = page; p < Math.Min(n, page + 4); p++)
                    {
                        if (q.TryClaim(p))
                        {
                            faulted.Add(p);
                        }
                    }
                }
            });
            await Task.WhenAll(push, faults).WaitAsync(TimeSpan.FromSeconds(60));

            Assert.Equal(0, q.Remaining);
            Assert.Equal(-1, q.Next());
            Assert.Equal(n, pushed.Count + faulted.Count);
            var seen = new bool[n];
            foreach (int p in pushed.Concat(faulted))
            {
                Assert.False(seen[p], $"page {p} was claimed twice");
                seen[p] = true;
            }

            faultedTotal += faulted.Count;
            pushedTotal += pushed.Count;
        }

        Assert.True(faultedTotal > 0 && pushedTotal > 0, $"both sides claimed pages (push {pushedTotal}, faults {faultedTotal})");
    }

    // ---------------------------------------------------------------- working-set estimator

    /// <summary>The estimator's rule, kept the obvious way: one history byte per page, bit 0 = the most recent window.</summary>
    private sealed class HistoryModel(int pageCount)
    {
        public byte[] History { get; } = new byte[pageCount];

        public void Close(IEnumerable<int> accessed)
        {
            var hit = accessed.ToHashSet();
            for (int p = 0; p < History.Length; p++)
            {
                History[p] = (byte)((History[p] << 1) | (hit.Contains(p) ? 1 : 0));
            }
        }

        public int Hits(int page, int windows) => BitOperations.PopCount((uint)(History[page] & ((1 << windows) - 1)));

        /// <summary>Most recent first: compares the windows from the newest back (bit 0, then bit 1, ...).</summary>
        public int Recency(int page) => ReverseBits(History[page]);

        public int[] ByRecency(IEnumerable<int> candidates)
            => candidates.Where(p => History[p] != 0).OrderByDescending(Recency).ThenBy(p => p).ToArray();
    }

    private static int ReverseBits(byte b)
    {
        int r = 0;
        for (int i = 0; i < 8; i++)
        {
            r |= ((b >> i) & 1) << (7 - i);
        }

        return r;
    }

    private static VirtMachine SmallMachine(int pages) => new(new MachineConfig { MemorySize = (ulong)pages * PageSize });

    private static void Window(VirtMachine m, WorkingSetEstimator e, params int[] accessed)
    {
        foreach (int p in accessed)
        {
            m.Memory.Accessed.Set(p);
        }

        e.CloseWindow();
    }

    private static int[] Pages(PageBitmap b)
    {
        var list = new List<int>();
        foreach (int p in b.EnumerateSet())
        {
            list.Add(p);
        }

        return [.. list];
    }

    [Fact]
    public void WorkingSet_window_in_which_the_guest_did_not_run_stays_open_and_keeps_its_accesses()
    {
        // A starved hart may retire nothing for a whole window: closing it would shift an empty
        // window into every page's history and empty an m-of-n working set.
        using VirtMachine m = SmallMachine(64);
        var e = new WorkingSetEstimator(m, TimeSpan.FromMilliseconds(100));
        Window(m, e, 3, 7);
        Assert.Equal(0, e.WindowsClosed);
        Assert.True(m.Memory.Accessed.Get(3) && m.Memory.Accessed.Get(7), "the accesses wait for the window to close");
        Assert.Empty(Pages(e.Select(1, 1, int.MaxValue, Pending(64))));
    }

    [Fact]
    public void WorkingSet_selects_pages_accessed_in_at_least_m_of_the_last_n_windows()
    {
        using VirtMachine m = new(new MachineConfig { MemorySize = 1 << 20 });
        var e = new WorkingSetEstimator(m, TimeSpan.FromMilliseconds(100), 0);
        PageBitmap all = Pending(m.Memory.PageCount);
        Assert.Equal(256, m.Memory.PageCount);
        Assert.Equal(0, e.WindowsClosed);
        Assert.Empty(Pages(e.Select(8, 1, int.MaxValue, all)));

        // Oldest window first. Page 1: every window. Page 2: the last two. Page 3: only the oldest four.
        // Page 200: the last one. Page 255: the 3rd and 5th counting back from the newest.
        Window(m, e, 1, 3);
        Window(m, e, 1, 3);
        Window(m, e, 1, 3);
        Window(m, e, 1, 3, 255);
        Window(m, e, 1);
        Window(m, e, 1, 255);
        Window(m, e, 1, 2);
        Window(m, e, 1, 2, 200);
        Assert.Equal(8, e.WindowsClosed);

        Assert.Equal(new[] { 1, 2, 200 }, Pages(e.Select(1, 1, int.MaxValue, all)));
        Assert.Equal(new[] { 1, 2, 200, 255 }, Pages(e.Select(3, 1, int.MaxValue, all)));
        Assert.Equal(new[] { 1, 2 }, Pages(e.Select(3, 2, int.MaxValue, all)));
        Assert.Equal(new[] { 1, 2 }, Pages(e.Select(4, 2, int.MaxValue, all)));
        Assert.Equal(new[] { 1, 2, 255 }, Pages(e.Select(5, 2, int.MaxValue, all)));
        Assert.Equal(new[] { 1, 3 }, Pages(e.Select(8, 4, int.MaxValue, all)));
        Assert.Equal(new[] { 1 }, Pages(e.Select(8, 5, int.MaxValue, all)));
        Assert.Equal(new[] { 1 }, Pages(e.Select(8, 8, int.MaxValue, all)));
        Assert.Equal(new[] { 1, 2, 3, 200, 255 }, Pages(e.Select(8, 1, int.MaxValue, all)));

        // Only candidates are considered.
        PageBitmap some = Pending(m.Memory.PageCount, [2, 3, 4, 255]);
        Assert.Equal(new[] { 2, 3, 255 }, Pages(e.Select(8, 1, int.MaxValue, some)));
        Assert.Equal(new[] { 2, 255 }, Pages(e.Select(4, 1, int.MaxValue, some)));
        Assert.Empty(Pages(e.Select(8, 1, int.MaxValue, Pending(m.Memory.PageCount, []))));

        // The window bits were consumed: closing an empty window shifts everything back by one.
        e.CloseWindow();
        Assert.Equal(9, e.WindowsClosed);
        Assert.Empty(Pages(e.Select(1, 1, int.MaxValue, all)));
        Assert.Equal(new[] { 1, 2, 200 }, Pages(e.Select(2, 1, int.MaxValue, all)));
    }

    [Fact]
    public void WorkingSet_under_a_cap_keeps_the_most_hit_then_the_most_recent_pages()
    {
        using VirtMachine m = SmallMachine(64);
        var e = new WorkingSetEstimator(m, TimeSpan.FromMilliseconds(100), 0);
        PageBitmap all = Pending(64);

        // Page 10: hit in windows 1,2,3 (oldest). Page 20: hit in 4,5,6 (newest). Page 30: 1 and 6.
        // Page 40: all six. Page 50: window 6 only. Page 60: window 1 only.
        Window(m, e, 10, 30, 40, 60);
        Window(m, e, 10, 40);
        Window(m, e, 10, 40);
        Window(m, e, 20, 40);
        Window(m, e, 20, 40);
        Window(m, e, 20, 30, 40, 50);

        Assert.Equal(new[] { 40 }, Pages(e.Select(6, 1, 1, all)));
        Assert.Equal(new[] { 20, 40 }, Pages(e.Select(6, 1, 2, all))); // 20 and 10 tie on hits: 20 is more recent
        Assert.Equal(new[] { 10, 20, 40 }, Pages(e.Select(6, 1, 3, all)));
        Assert.Equal(new[] { 10, 20, 30, 40 }, Pages(e.Select(6, 1, 4, all)));
        Assert.Equal(new[] { 10, 20, 30, 40, 50 }, Pages(e.Select(6, 1, 5, all))); // 50 (newest window) before 60
        Assert.Equal(new[] { 10, 20, 30, 40, 50, 60 }, Pages(e.Select(6, 1, 6, all)));
        Assert.Equal(new[] { 20, 30, 40, 50 }, Pages(e.Select(1, 1, 4, all)));
        Assert.Equal(new[] { 20, 40 }, Pages(e.Select(2, 1, 2, all)));
        Assert.Empty(Pages(e.Select(6, 1, 0, all)));
    }

    [Fact]
    public void WorkingSet_ByRecency_orders_pages_by_their_most_recent_access()
    {
        using VirtMachine m = SmallMachine(64);
        var e = new WorkingSetEstimator(m, TimeSpan.FromMilliseconds(100), 0);
        Window(m, e, 5, 9, 33);       // oldest
        Window(m, e, 7);
        Window(m, e, 6, 33);
        Window(m, e, 8, 9);           // newest

        // 9 and 8 were touched in the newest window (9 also in the oldest: more history); then 6 and 33
        // (33 also in the oldest); then 7; then 5. Ties broken by page index. 0 was never touched.
        Assert.Equal(new[] { 9, 8, 33, 6, 7, 5 }, e.ByRecency(Pending(64)));
        Assert.Equal(new[] { 33, 7, 5 }, e.ByRecency(Pending(64, [0, 5, 7, 33])));
        Assert.Empty(e.ByRecency(Pending(64, [0, 1])));
    }

    [Theory]
    [InlineData(301)] // neither a multiple of 8 nor of 64
    [InlineData(256)]
    [InlineData(77)]
    [InlineData(8)]
    public void WorkingSet_history_matches_a_per_page_model_over_random_access_patterns(int pageCount)
    {
        Gen.Select(Gen.Int[0, 100].Array[20], Gen.Int[0, pageCount - 1].Array[0, 40].Array[12]).Sample((densities, windows) =>
        {
            using VirtMachine m = SmallMachine(pageCount);
            var e = new WorkingSetEstimator(m, TimeSpan.FromMilliseconds(100), 0);
            var model = new HistoryModel(pageCount);
            int[] everyPage = Enumerable.Range(0, pageCount).ToArray();
            PageBitmap all = Pending(pageCount);
            var rng = new Random(densities[0]);
            for (int w = 0; w < windows.Length; w++)
            {
                // Some explicit pages, plus a random share of all pages (so whole words and tails fill).
                int density = densities[w];
                int[] accessed = [.. windows[w], .. everyPage.Where(_ => rng.Next(100) < density / 4)];
                Window(m, e, accessed);
                model.Close(accessed);
                Assert.Equal(w + 1, e.WindowsClosed);

                for (int n = 1; n <= 8; n++)
                {
                    for (int k = 1; k <= n; k++)
                    {
                        int[] expected = everyPage.Where(p => model.Hits(p, n) >= k).ToArray();
                        Assert.Equal(expected, Pages(e.Select(n, k, int.MaxValue, all)));
                    }
                }

                Assert.Equal(model.ByRecency(everyPage), e.ByRecency(all));
            }

            // Capped selections against the model: the right number, all eligible, and none left
            // out that ranks above one kept (hits first, then recency).
            foreach ((int n, int k, int cap) in new[] { (8, 1, 5), (4, 2, 3), (8, 3, 10), (2, 1, 1), (8, 1, pageCount / 2) })
            {
                int[] eligible = everyPage.Where(p => model.Hits(p, n) >= k).ToArray();
                int[] kept = Pages(e.Select(n, k, cap, all));
                Assert.Equal(Math.Min(cap, eligible.Length), kept.Length);
                Assert.Subset(eligible.ToHashSet(), kept.ToHashSet());
                (int, int) Rank(int p) => (model.Hits(p, n), model.Recency(p));
                foreach (int left in eligible.Except(kept))
                {
                    foreach (int k2 in kept)
                    {
                        Assert.True(Rank(k2).CompareTo(Rank(left)) >= 0, $"page {left} (rank {Rank(left)}) was dropped for page {k2} (rank {Rank(k2)})");
                    }
                }
            }
        }, iter: 25, threads: 1);
    }

    // ---------------------------------------------------------------- digest

    [Fact]
    public void PageHashLedger_digest_is_the_sum_of_current_hashes()
    {
        var ledger = new PageHashLedger(16);
        Assert.Equal(0UL, ledger.Digest);
        Assert.Equal(0, ledger.NonZeroPages);

        ledger.Record(3, 100);
        ledger.Record(5, ulong.MaxValue); // the sum wraps mod 2^64
        Assert.Equal(99UL, ledger.Digest);
        Assert.Equal(2, ledger.NonZeroPages);

        ledger.Record(3, 7); // a resend replaces the page's hash
        Assert.Equal(unchecked(7UL + ulong.MaxValue), ledger.Digest);
        Assert.Equal(2, ledger.NonZeroPages);

        ledger.Record(5, 0); // the page became zero
        Assert.Equal(7UL, ledger.Digest);
        Assert.Equal(1, ledger.NonZeroPages);
        ledger.Record(5, 0);
        Assert.Equal(1, ledger.NonZeroPages);

        ledger.Record(15, 1000);
        ledger.Record(3, 0);
        Assert.Equal(1000UL, ledger.Digest);
        Assert.Equal(1, ledger.NonZeroPages);
    }

    [Fact]
    public void PageHash_of_memory_equals_the_ledger_of_its_non_zero_pages()
    {
        const int pageCount = 100;
        using var memory = new GuestMemory(pageCount * PageSize);
        var rng = new Random(21);
        var page = new byte[PageSize];
        for (int p = 0; p < pageCount; p += 3)
        {
            rng.NextBytes(page);
            memory.WritePhysical(memory.BaseAddress + ((ulong)p * PageSize), page);
        }

        memory.WritePhysical(memory.BaseAddress + (10UL * PageSize) + 5, [0xAB]); // a single byte
        memory.WritePhysical(memory.BaseAddress + (9UL * PageSize), new byte[PageSize]); // populated but zero again
        memory.WritePhysical(memory.BaseAddress + (99UL * PageSize), new byte[PageSize]);

        var ledger = new PageHashLedger(pageCount);
        for (int p = pageCount - 1; p >= 0; p--) // order does not matter
        {
            ledger.Record(p, PageHash.Of(p, memory.Page(p)));
        }

        (ulong digest, uint nonZero) = PageHash.OfMemory(memory);
        Assert.Equal(ledger.Digest, digest);
        Assert.Equal(ledger.NonZeroPages, (int)nonZero);
        Assert.Equal(33, (int)nonZero); // 0,3,...,96 without 9 and 99, plus 10

        // The hash is seeded by the page index, so moved content changes the digest.
        ReadOnlySpan<byte> content = memory.Page(3);
        Assert.NotEqual(PageHash.Of(3, content), PageHash.Of(4, content));
        Assert.Equal(0UL, PageHash.Of(1, memory.Page(1)));

        memory.WritePhysical(memory.BaseAddress + (50UL * PageSize), [1]);
        Assert.NotEqual(digest, PageHash.OfMemory(memory).Digest);
    }

    // ---------------------------------------------------------------- link shaper

    [Theory]
    [InlineData("1Gbit", 1_000_000_000L)]
    [InlineData("100Mbit", 100_000_000L)]
    [InlineData("500M", 500_000_000L)]
    [InlineData("1G", 1_000_000_000L)]
    [InlineData("2.5Gbit", 2_500_000_000L)]
    [InlineData("10kbit", 10_000L)]
    [InlineData(" 40 Mbit/s ", 40_000_000L)]
    [InlineData("1gbps", 1_000_000_000L)]
    [InlineData("123456", 123_456L)]
    [InlineData("unlimited", 0L)]
    [InlineData("UNLIMITED", 0L)]
    [InlineData("none", 0L)]
    public void LinkShaper_parses_rates(string text, long bitsPerSecond) => Assert.Equal(bitsPerSecond, LinkShaper.ParseRate(text));

    [Theory]
    [InlineData("fast")]
    [InlineData("Gbit")]
    [InlineData("-5M")]
    [InlineData("0M")]
    [InlineData("0")]
    [InlineData("")]
    [InlineData("1Tbit")]
    [InlineData("1,5G")]
    [InlineData("NaN")]
    [InlineData("infinity")]
    [InlineData("1e30G")]
    [InlineData("0.5")]
    [InlineData("0.0000001k")]
    public void LinkShaper_rejects_bad_rates(string text)
    {
        FormatException e = Assert.Throws<FormatException>(() => LinkShaper.ParseRate(text));
        Assert.Contains(text, e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(0L, "unlimited")]
    [InlineData(-1L, "unlimited")]
    [InlineData(1_000_000_000L, "1Gbit")]
    [InlineData(10_000_000_000L, "10Gbit")]
    [InlineData(1_500_000_000L, "1500Mbit")]
    [InlineData(100_000_000L, "100Mbit")]
    [InlineData(2_500_000L, "2.5Mbit")]
    [InlineData(5_000L, "5000bit")]
    public void LinkShaper_formats_rates_and_parses_them_back(long bitsPerSecond, string text)
    {
        Assert.Equal(text, LinkShaper.Format(bitsPerSecond));
        Assert.Equal(Math.Max(0, bitsPerSecond), LinkShaper.ParseRate(text));
    }

    [Fact]
    public void LinkShaper_transmission_time_follows_the_rate()
    {
        Assert.Equal(TimeSpan.FromSeconds(1), new LinkShaper(8_000_000).Transmission(1_000_000));
        Assert.Equal(TimeSpan.FromMilliseconds(80), new LinkShaper(100_000_000).Transmission(1_000_000));
        Assert.Equal(TimeSpan.Zero, new LinkShaper(0).Transmission(1_000_000));
        Assert.True(LinkShaper.None.Unlimited);
        Assert.False(new LinkShaper(1).Unlimited);
    }

    [Fact]
    public void LinkShaper_sends_urgent_traffic_ahead_of_bulk_but_never_faster_than_the_link()
    {
        const long rate = 1_000_000_000;
        var shaper = new LinkShaper(rate);
        long now = Stopwatch.GetTimestamp() + Stopwatch.Frequency; // long after the link went idle
        long burst = (long)(LinkShaper.DefaultBurst.TotalSeconds * Stopwatch.Frequency);
        long Ticks(int bytes) => (long)(bytes / (rate / 8.0 / Stopwatch.Frequency));

        // 10 MB of bulk queued: the link is busy for 80 ms.
        const int bulk = 10_000_000, window = 64 << 10;
        Assert.Equal(now - burst, shaper.Book(bulk, urgent: false, now));

        // Fault replies jump that queue, but each waits for the ones before it: 64 KiB each,
        // back to back, at the link's own rate (not all at once).
        for (int i = 0; i < 8; i++)
        {
            Assert.Equal(now + (i * Ticks(window)), shaper.Book(window, urgent: true, now));
        }

        // The bulk behind them waits out both its own queue and what the urgent traffic took.
        long expected = now - burst + Ticks(bulk) + (8 * Ticks(window));
        Assert.InRange(shaper.Book(4096, urgent: false, now), expected - 8, expected + 8);

        // Later, once the urgent traffic has drained, a fault reply goes at once again.
        long later = now + (9 * Ticks(window));
        Assert.Equal(later, shaper.Book(4096, urgent: true, later));
    }

    [Fact]
    public void LinkShaper_bulk_turn_comes_after_the_windows_and_replies_booked_before_it()
    {
        const long rate = 1_000_000_000;
        var shaper = new LinkShaper(rate);
        long now = Stopwatch.GetTimestamp() + Stopwatch.Frequency; // long after the link went idle
        long Ticks(int bytes) => (long)(bytes / (rate / 8.0 / Stopwatch.Frequency));

        // An idle link: a bulk batch could start at once (with its burst credit).
        Assert.True(shaper.BulkTurn(now) <= now);

        // Windows booked for 2 ms of link time, then a fault reply: the bulk's turn is after both,
        // and asking for it books nothing.
        long idle = shaper.BulkTurn(now);
        _ = shaper.Book(250_000, LinkClass.Prefetch, now);
        _ = shaper.Book(4096, LinkClass.Urgent, now);
        long turn = shaper.BulkTurn(now);
        Assert.InRange(turn, idle + Ticks(250_000 + 4096) - 8, idle + Ticks(250_000 + 4096) + 8);
        Assert.Equal(turn, shaper.BulkTurn(now));

        // An unlimited link never waits.
        LinkShaper.None.WaitForBulkTurn(CancellationToken.None);
    }

    [Fact]
    public void LinkShaper_puts_prefetch_behind_every_fault_reply_and_ahead_of_bulk()
    {
        const long rate = 1_000_000_000;
        var shaper = new LinkShaper(rate);
        long now = Stopwatch.GetTimestamp() + Stopwatch.Frequency;
        long burst = (long)(LinkShaper.DefaultBurst.TotalSeconds * Stopwatch.Frequency);
        long Ticks(int bytes) => (long)(bytes / (rate / 8.0 / Stopwatch.Frequency));
        const int page = 4096 + 24, window = 4 * (4096 + 7) + 24, bulk = 1_000_000;

        Assert.Equal(now - burst, shaper.Book(bulk, LinkClass.Bulk, now));

        // A fault's window (prefetch) goes ahead of the bulk queue...
        Assert.Equal(now, shaper.Book(window, LinkClass.Prefetch, now));
        long secondWindow = shaper.Book(window, LinkClass.Prefetch, now);
        Assert.Equal(now + Ticks(window), secondWindow);

        // ...but the next fault's page goes ahead of the windows not yet started, and pushes them back.
        Assert.Equal(now, shaper.Book(page, LinkClass.Urgent, now));
        long thirdWindow = shaper.Book(window, LinkClass.Prefetch, now);
        Assert.InRange(thirdWindow, now + (2 * Ticks(window)) + Ticks(page) - 4, now + (2 * Ticks(window)) + Ticks(page) + 4);

        // Bulk waits out everything: its own queue, three windows and the fault reply.
        long expected = now - burst + Ticks(bulk) + (3 * Ticks(window)) + Ticks(page);
        Assert.InRange(shaper.Book(4096, LinkClass.Bulk, now), expected - 8, expected + 8);
    }

    [Fact]
    public void LinkShaper_blocking_acquire_of_a_fault_reply_lasts_its_transmission_time()
    {
        var shaper = new LinkShaper(100_000_000); // 4,120 bytes take 329.6 µs
        long waited = shaper.Acquire(4096 + 24, LinkClass.Urgent, untilSent: true, CancellationToken.None);
        Assert.True(waited >= (long)(0.0003296 * Stopwatch.Frequency), $"waited {waited * 1e6 / Stopwatch.Frequency:0} µs");
        Assert.Equal(0, shaper.Acquire(1, LinkClass.Bulk, untilSent: false, CancellationToken.None));
        Assert.Equal(0, LinkShaper.None.Acquire(1 << 20, LinkClass.Urgent, untilSent: true, CancellationToken.None));
    }

    [Fact]
    public async Task LinkShaper_never_lets_bulk_traffic_exceed_the_cap()
    {
        const long rate = 200_000_000;
        const int total = 4 << 20, chunk = 64 << 10;
        double minimum = (total * 8.0 / rate) - LinkShaper.DefaultBurst.TotalSeconds;
        CancellationToken ct = Timeout;
        for (int round = 0; round < 3; round++)
        {
            long start = Stopwatch.GetTimestamp();
            var shaper = new LinkShaper(rate);
            for (int sent = 0; sent < total; sent += chunk)
            {
                await shaper.AcquireAsync(chunk, urgent: false, ct);
            }

            double elapsed = Stopwatch.GetElapsedTime(start).TotalSeconds;
            Assert.True(elapsed >= minimum, $"4 MiB at 200 Mbit/s took {elapsed * 1000:F2} ms, less than the {minimum * 1000:F2} ms the cap allows");
        }
    }

    /// <summary>True if the acquisition returned without waiting (consumes the ValueTask).</summary>
    private static bool CompletedAtOnce(ValueTask acquisition)
    {
        bool done = acquisition.IsCompleted;
        if (done)
        {
            acquisition.GetAwaiter().GetResult();
        }
        else
        {
            _ = acquisition.AsTask();
        }

        return done;
    }

    [Fact]
    public async Task LinkShaper_urgent_traffic_does_not_wait_behind_bulk_debt()
    {
        var shaper = new LinkShaper(1_000_000); // 125 kB/s
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));

        // 1 MB books eight seconds of the link.
        Assert.True(CompletedAtOnce(shaper.AcquireAsync(1_000_000, urgent: false, cts.Token)), "the first bulk send starts at once");

        Assert.True(CompletedAtOnce(shaper.AcquireAsync(64 << 10, urgent: true, cts.Token)), "an urgent send waited behind bulk");

        // ...but urgent traffic queues behind urgent traffic: those 64 KiB take half a second.
        using var urgentCancel = CancellationTokenSource.CreateLinkedTokenSource(cts.Token);
        Task second = shaper.AcquireAsync(64 << 10, urgent: true, urgentCancel.Token).AsTask();
        Assert.False(second.IsCompleted, "urgent traffic never exceeds the link rate");
        urgentCancel.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await second);

        // Bulk traffic now waits the debt out (and can be cancelled while it waits).
        using var bulkCancel = CancellationTokenSource.CreateLinkedTokenSource(cts.Token);
        Task bulk = shaper.AcquireAsync(1, urgent: false, bulkCancel.Token).AsTask();
        Assert.False(bulk.IsCompleted, "bulk traffic must wait behind the debt");
        bulkCancel.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await bulk);

        // An unlimited link never waits.
        var unlimited = new LinkShaper(0);
        Assert.True(CompletedAtOnce(unlimited.AcquireAsync(int.MaxValue, urgent: false, cts.Token)));
        Assert.True(CompletedAtOnce(unlimited.AcquireAsync(int.MaxValue, urgent: false, cts.Token)));
    }

    // ---------------------------------------------------------------- remote pager

    /// <summary>Attaches a fault connection to the pager; the returned function closes it and reads what was written.</summary>
    private static Func<Task<List<PageRequest>>> Capture(RemotePager pager, int pageCount)
    {
        (Stream a, Stream b) = InMemoryTransport.CreatePair();
        var tx = new FrameChannel(a, urgent: true);
        pager.Attach(tx);
        return async () =>
        {
            await tx.DisposeAsync();
            await using var rx = new FrameChannel(b);
            var requests = new List<PageRequest>();
            while (true)
            {
                (MessageType type, ReadOnlyMemory<byte> payload) frame;
                try
                {
                    frame = await rx.ReceiveAsync(Timeout);
                }
                catch (ProtocolException e) when (e.Message == "connection closed by peer")
                {
                    return requests;
                }

                Assert.Equal(MessageType.PageRequest, frame.type);
                requests.Add(PageRequest.Decode(frame.payload.Span, pageCount));
            }
        };
    }

    [Fact]
    public async Task RemotePager_requests_each_locality_window_once()
    {
        const int pageCount = 64;
        using var memory = new GuestMemory(pageCount * PageSize);
        foreach (int p in Enumerable.Range(8, 56).Where(p => p != 20))
        {
            memory.Absent.Set(p);
        }

        var pager = new RemotePager(memory, 8);
        var sent = Capture(pager, pageCount);
        pager.PageNeeded(12, 1);  // window [12 - 2, 12 + 6)
        pager.PageNeeded(15, 1);  // inside it: already on its way, so this page alone, at once
        pager.PageNeeded(10, 1);
        pager.PageNeeded(17, 1);
        pager.PageNeeded(18, 1);  // just past it: a new window (its first pages already requested)
        pager.PageNeeded(62, 1);  // near the end: the window shifts to stay inside RAM
        pager.PageNeeded(56, 1);  // already requested by the previous window
        Assert.Equal(7, pager.Faults);
        Assert.Equal(3, pager.RequestsSent);
        Assert.Equal(4, pager.InFlightRequests);
        Assert.Equal(new[]
        {
            new PageRequest(12, 10, 8), new PageRequest(15, 15, 1), new PageRequest(10, 10, 1), new PageRequest(17, 17, 1),
            new PageRequest(18, 16, 8), new PageRequest(62, 56, 8), new PageRequest(56, 56, 1),
        }, await sent());
        Assert.Equal(7, pager.Faults);
    }

    /// <summary>
    /// Whatever the RAM size, window, kind of window and fault stream (faults anywhere, pages
    /// arriving and touched or not, a clock that passes the prefetch horizon or not), a fault
    /// never throws into the hart and its window fits in RAM. (A fixed window shifted
    /// at the end of RAM once made the prefetch statistics throw on the hart's thread.)
    /// </summary>
    [Fact]
    public void RemotePager_never_throws_into_the_hart_and_its_windows_fit_in_ram()
    {
        long horizon = (long)(PrepageWindow.Horizon.TotalSeconds * System.Diagnostics.Stopwatch.Frequency);
        Gen.Select(Gen.Int[1, 300], Gen.Int[1, 600], Gen.Bool, Gen.Select(Gen.Int[0, 299], Gen.Int[0, 3], Gen.Bool).Array[1, 200])
            .Sample((pageCount, locality, adaptive, faults) =>
            {
                using var memory = new GuestMemory((ulong)pageCount * PageSize);
                memory.Absent.SetAll();
                long now = 1;
                var pager = new RemotePager(memory, locality, adaptive, () => now);
                foreach ((int at, int step, bool arrives) in faults)
                {
                    int page = at % pageCount;
                    pager.PageNeeded(page, now);
                    Assert.InRange(pager.CurrentWindow, 1, pageCount);
                    if (arrives)
                    {
                        memory.Absent.Clear(page);
                        memory.Accessed.Set(page);
                    }

                    now += step * horizon / 2;
                }
            }, iter: 300);
    }

    [Fact]
    public async Task RemotePager_windows_are_clipped_to_RAM()
    {
        const int pageCount = 10;
        using var memory = new GuestMemory(pageCount * PageSize);
        memory.Absent.SetAll();

        var small = new RemotePager(memory, 4);
        var smallSent = Capture(small, pageCount);
        small.PageNeeded(0, 1); // at the start: [0, 4)
        small.PageNeeded(9, 1); // at the end: [6, 10)
        small.PageNeeded(5, 1); // nothing requested yet at 5: [4, 8)
        Assert.Equal(new[] { new PageRequest(0, 0, 4), new PageRequest(9, 6, 4), new PageRequest(5, 4, 4) }, await smallSent());

        var wide = new RemotePager(memory, 1024); // wider than RAM: all of it, once; later faults ask for their page alone
        var wideSent = Capture(wide, pageCount);
        wide.PageNeeded(3, 1);
        for (int p = 0; p < pageCount; p++)
        {
            wide.PageNeeded(p, 1);
        }

        Assert.Equal(11, wide.Faults);
        Assert.Equal(1, wide.RequestsSent);
        Assert.Equal(new[] { new PageRequest(3, 0, pageCount) }.Concat(Enumerable.Range(0, pageCount).Select(p => new PageRequest((uint)p, (uint)p, 1))), await wideSent());

        var exact = new RemotePager(memory, 0); // at least the page itself
        var exactSent = Capture(exact, pageCount);
        exact.PageNeeded(7, 1);
        Assert.Equal(new[] { new PageRequest(7, 7, 1) }, await exactSent());
    }

    [Fact]
    public void FaultStageRecorder_splits_a_stall_into_its_stages()
    {
        var recorder = new FaultStageRecorder();
        long us = Stopwatch.Frequency / 1_000_000;
        // blocked at 0; request written at 10 µs; reply received at 110 µs, of which the source
        // held it 5 µs (queue) + 40 µs (link); installed at 120 µs; hart runs at 130 µs.
        long t0 = 1_000_000;
        // The write of the request returned at 12 µs.
        recorder.Record(t0, t0 + (10 * us), t0 + (12 * us), t0 + (110 * us), new FaultTiming(5_000, 40_000), t0 + (120 * us), t0 + (130 * us));
        // A fault on a page already on its way: no reply of its own; installed at 300 µs, resumed at 302 µs.
        recorder.Record(t0, t0 + (8 * us), t0 + (9 * us), 0, default, t0 + (300 * us), t0 + (302 * us));
        // The same, but the hart's own write of its request took until 2,000 µs, long after the
        // page was installed at 50 µs: the stall is the write's, not the wake-up's.
        recorder.Record(t0, t0 + (8 * us), t0 + (2_000 * us), 0, default, t0 + (50 * us), t0 + (2_001 * us));
        FaultStagesReport r = recorder.Summary();
        static void Near(double expectedUs, double ms) => Assert.InRange(ms * 1000, expectedUs - 0.5, expectedUs + 0.5);
        Assert.Equal(3, r.Total.Count);
        Assert.Equal(3, r.Request.Count);
        Assert.Equal(3, r.Send!.Count);
        Near(2, r.Send.P50Ms);
        Near(1_992, r.Send.MaxMs);
        Assert.Equal(1, r.Network.Count);
        Near(100 - 45, r.Network.MaxMs);
        Near(5, r.SourceQueue.MaxMs);
        Near(40, r.SourceLink.MaxMs);
        Near(10, r.Install.MaxMs);
        Assert.Equal(3, r.Resume.Count);
        Near(10, r.Resume.MaxMs); // not 1,951: from the write's return
        Near(2, r.Resume.P50Ms);
        Assert.Equal(2, r.InFlight.Count);
        Near(300, r.InFlight.MaxMs);
        Near(2_001, r.Total.MaxMs);

        // The slowest, slowest first, each with its own stages.
        Assert.Equal(3, r.Slowest!.Count);
        SlowFault slowest = r.Slowest[0];
        Near(2_001, slowest.TotalMs);
        Near(1_992, slowest.SendMs!.Value);
        Near(1, slowest.ResumeMs!.Value);
        Near(50, slowest.InFlightMs!.Value);
        Assert.Null(slowest.NetworkMs); // no reply of its own
        Near(302, r.Slowest[1].TotalMs);
        Near(130, r.Slowest[2].TotalMs);
        Near(55, r.Slowest[2].NetworkMs!.Value);

        // Only the five slowest are kept, and when each blocked (after the first) is told.
        for (int i = 1; i <= 10; i++)
        {
            long at = t0 + (i * 1_000 * us);
            recorder.Record(at, at + us, at + (2 * us), 0, default, at + (i * 500 * us), at + ((i * 500) + 1) * us);
        }

        IReadOnlyList<SlowFault> kept = recorder.Summary().Slowest!;
        Assert.Equal(FaultStageRecorder.SlowestKept, kept.Count);
        Assert.Equal(new[] { 5_001.0, 4_501, 4_001, 3_501, 3_001 }, kept.Select(f => Math.Round(f.TotalMs * 1000)));
        Near(10_000, kept[0].AtMs);
    }

    [Fact]
    public async Task FaultServer_sends_the_faulted_page_first_then_its_window_and_never_a_page_twice()
    {
        const int pageCount = 64;
        using GuestMemory memory = NumberedMemory(pageCount);
        var queue = new PushQueue(Pending(pageCount), PushOrder.Linear, 0);
        Assert.True(queue.TryClaim(40)); // the push has it: on its way
        Assert.True(queue.TryClaim(12)); // one of the coming window's pages, claimed by the push

        (Stream a, Stream b) = InMemoryTransport.CreatePair();
        var shaper = new LinkShaper(1_000_000_000);
        await using var sourceSide = new FrameChannel(a, shaper, urgent: true);
        await using var destinationSide = new FrameChannel(b);
        var books = new SourceBooks(pageCount);
        var server = new FaultServer(sourceSide, memory, books, compress: false);
        server.Start(queue);
        using var stop = new CancellationTokenSource();
        Task running = server.RunAsync(stop.Token);

        // A fault alone: its page, then its whole window (nothing else waits).
        byte[] request = new byte[PageRequest.Size];
        new PageRequest(10, 8, 8).Encode(request);
        await destinationSide.SendAsync(MessageType.PageRequest, request, Timeout);
        List<(uint Fault, FaultTiming Timing, int[] Pages)> frames = await ReceiveFaultFrames(destinationSide, pageCount, until: f => f.Sum(x => x.Pages.Length) == 7);

        // The faulted page alone in the first frame, stamped with its time at the source (at
        // least its 33 µs on a 1 Gbit/s link); its window behind it in frames of at most four
        // pages that name no fault (but 12, which the push has).
        Assert.Equal(10u, frames[0].Fault);
        Assert.Equal(new[] { 10 }, frames[0].Pages);
        Assert.True(frames[0].Timing.LinkNs >= 30_000, $"link {frames[0].Timing.LinkNs} ns");
        List<(uint Fault, FaultTiming Timing, int[] Pages)> windows = [.. frames.Skip(1)];
        Assert.All(windows, f => Assert.Equal(PageBatchWriter.NoFault, f.Fault));
        Assert.All(windows, f => Assert.InRange(f.Pages.Length, 1, FaultServer.PrefetchFramePages));
        Assert.Equal(new[] { 8, 9, 11, 13, 14, 15 }, windows.SelectMany(f => f.Pages));

        // Then nothing for 40, on its way by the push; 41 at once.
        foreach (PageRequest r in new[] { new PageRequest(40, 40, 1), new PageRequest(41, 41, 1) })
        {
            r.Encode(request);
            await destinationSide.SendAsync(MessageType.PageRequest, request, Timeout);
        }

        frames = await ReceiveFaultFrames(destinationSide, pageCount, until: f => f[^1].Fault == 41);
        Assert.Equal(new[] { 41 }, Assert.Single(frames).Pages);
        Assert.Equal(3, server.Requests);
        Assert.Equal(1, server.AlreadyOnItsWay);
        Assert.Equal(pageCount - 10, queue.Remaining); // 40 and 12 by the push; 10, its six window pages and 41 here

        stop.Cancel();
        await destinationSide.DisposeAsync(); // the connection closes: the server's thread ends
        await Assert.ThrowsAnyAsync<Exception>(() => running.WaitAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task FaultServer_leaves_a_window_to_the_push_when_another_request_waits()
    {
        // The next fault stalls a vCPU; the window is a guess: a request already waiting cuts the
        // window short, and its pages go to the push queue's windows, first in its order.
        const int pageCount = 64;
        using GuestMemory memory = NumberedMemory(pageCount);
        var queue = new PushQueue(Pending(pageCount), PushOrder.Linear, 0);
        // Both requests wait before the server reads the first.
        (FrameChannel sourceSide, FrameChannel destinationSide, FaultServer server) = await WaitingRequests(memory, queue, new PageRequest(20, 16, 8), new PageRequest(41, 41, 1));
        await using var _ = sourceSide;
        await using var __ = destinationSide;

        using var stop = new CancellationTokenSource();
        Task running = server.RunAsync(stop.Token);
        List<(uint Fault, FaultTiming Timing, int[] Pages)> frames = await ReceiveFaultFrames(destinationSide, pageCount, until: f => f[^1].Fault == 41);
        Assert.Equal(new[] { (20u, 20), (41u, 41) }, frames.Select(f => (f.Fault, Assert.Single(f.Pages))));
        Assert.True(queue.HasWindows);
        Assert.Equal(new[] { 16, 17, 18, 19, 21, 22, 23 }, Enumerable.Range(0, 8).Select(_ => queue.NextPrefetch()).TakeWhile(p => p >= 0));

        stop.Cancel();
        await destinationSide.DisposeAsync();
        await Assert.ThrowsAnyAsync<Exception>(() => running.WaitAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task FaultServer_sends_a_page_the_push_holds_unwritten_but_not_one_it_wrote()
    {
        // The push claims a batch, then may wait for the link or for a core (it runs below the
        // fault path) before writing it: a fault on one of those pages must not wait with it.
        const int pageCount = 64;
        using GuestMemory memory = NumberedMemory(pageCount);
        long now = 1;
        var queue = new PushQueue(Pending(pageCount), PushOrder.Linear, 0, () => now);
        Assert.Equal(new[] { 0, 1 }, Enumerable.Range(0, 2).Select(_ => queue.Next()));
        queue.Written([0, 1]);   // 0 and 1 are on the link
        Assert.Equal(new[] { 2, 3 }, Enumerable.Range(0, 2).Select(_ => queue.Next()));
        now += Stopwatch.Frequency / 1000;   // 2 and 3 held for a millisecond: the push is stuck

        (FrameChannel sourceSide, FrameChannel destinationSide, FaultServer server) = await WaitingRequests(memory, queue,
            [.. new uint[] { 2, 0, 2, 3 }.Select(page => new PageRequest(page, page, 1))]);
        await using var _ = sourceSide;
        await using var __ = destinationSide;

        using var stop = new CancellationTokenSource();
        Task running = server.RunAsync(stop.Token);
        List<(uint Fault, FaultTiming Timing, int[] Pages)> frames = await ReceiveFaultFrames(destinationSide, pageCount, until: f => f[^1].Fault == 3);
        Assert.Equal(new[] { (2u, 2), (3u, 3) }, frames.Select(f => (f.Fault, Assert.Single(f.Pages))));
        Assert.Equal(2, server.RescuedFromPush);       // each held page once
        Assert.Equal(2, server.AlreadyOnItsWay);       // page 0 (written) and page 2's second request
        Assert.False(queue.TryRescue(1));

        stop.Cancel();
        await destinationSide.DisposeAsync();
        await Assert.ThrowsAnyAsync<Exception>(() => running.WaitAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task FaultServer_leaves_a_window_to_the_push_rather_than_wait_for_the_link()
    {
        // Windows already booked 0.5 s ahead on the link: the fault server would sleep in its next
        // window frame, and every request behind it with it. It sends the faulted page (urgent,
        // ahead of them) and leaves the window to the push.
        const int pageCount = 64;
        using GuestMemory memory = NumberedMemory(pageCount);
        var queue = new PushQueue(Pending(pageCount), PushOrder.Linear, 0);
        var link = new LinkShaper(1_000_000_000);
        link.Book(62_500_000, LinkClass.Prefetch, Stopwatch.GetTimestamp());
        Assert.True(link.PrefetchWouldWait(Stopwatch.GetTimestamp()));
        (FrameChannel sourceSide, FrameChannel destinationSide, FaultServer server) = await WaitingRequests(memory, queue, link, new PageRequest(20, 16, 8));
        await using var _ = sourceSide;
        await using var __ = destinationSide;

        using var stop = new CancellationTokenSource();
        Task running = server.RunAsync(stop.Token);
        List<(uint Fault, FaultTiming Timing, int[] Pages)> frames = await ReceiveFaultFrames(destinationSide, pageCount, until: f => f[^1].Fault == 20);
        Assert.Equal(new[] { (20u, 20) }, frames.Select(f => (f.Fault, Assert.Single(f.Pages))));
        for (int i = 0; i < 200 && !queue.HasWindows; i++)
        {
            await Task.Delay(10);   // (the reply goes before the window is looked at)
        }

        Assert.Equal(new[] { 16, 17, 18, 19, 21, 22, 23 }, Enumerable.Range(0, 8).Select(_ => queue.NextPrefetch()).TakeWhile(p => p >= 0));

        stop.Cancel();
        await destinationSide.DisposeAsync();
        await Assert.ThrowsAnyAsync<Exception>(() => running.WaitAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public void PushQueue_a_page_is_rescued_only_while_the_push_has_held_it_unwritten_for_a_while()
    {
        long now = 1;
        long tick = (long)(PushQueue.RescueAfter.TotalSeconds * Stopwatch.Frequency);
        var queue = new PushQueue(Pending(8), PushOrder.Linear, 0, () => now);
        Assert.True(queue.TryClaim(5));        // the fault server's own claim: not the push's
        now += 2 * tick;
        Assert.False(queue.TryRescue(5));
        Assert.False(queue.TryRescue(6));      // still pending: nobody holds it
        Assert.Equal(0, queue.Next());
        Assert.Equal(1, queue.Next());
        now += tick / 2;
        Assert.False(queue.TryRescue(1));      // a batch being filled: the push writes it in a moment
        now += tick;
        Assert.True(queue.TryRescue(1));       // held too long: the push is stuck
        Assert.False(queue.TryRescue(1));      // once
        queue.Written([0, 1]);
        now += 2 * tick;
        Assert.False(queue.TryRescue(0));      // written: on the link
    }

    /// <summary>A fault server (not yet running) over an in-memory pair at 1 Gbit/s, with <paramref name="requests"/> already waiting for it.</summary>
    private static Task<(FrameChannel Source, FrameChannel Destination, FaultServer Server)> WaitingRequests(GuestMemory memory, PushQueue queue, params PageRequest[] requests)
        => WaitingRequests(memory, queue, new LinkShaper(1_000_000_000), requests);

    private static async Task<(FrameChannel Source, FrameChannel Destination, FaultServer Server)> WaitingRequests(GuestMemory memory, PushQueue queue, LinkShaper link, params PageRequest[] requests)
    {
        (Stream a, Stream b) = InMemoryTransport.CreatePair();
        var sourceSide = new FrameChannel(a, link, urgent: true);
        var destinationSide = new FrameChannel(b);
        var server = new FaultServer(sourceSide, memory, new SourceBooks(memory.PageCount), compress: false);
        server.Start(queue);
        byte[] request = new byte[PageRequest.Size];
        foreach (PageRequest r in requests)
        {
            r.Encode(request);
            await destinationSide.SendAsync(MessageType.PageRequest, request, Timeout);
        }

        return (sourceSide, destinationSide, server);
    }

    /// <summary>Memory whose page p begins with p + 1 (a page's content names it).</summary>
    private static GuestMemory NumberedMemory(int pageCount)
    {
        var memory = new GuestMemory((ulong)pageCount * PageSize);
        for (int p = 0; p < pageCount; p++)
        {
            memory.WritePhysical(memory.BaseAddress + (ulong)(p * PageSize), BitConverter.GetBytes(p + 1));
        }

        return memory;
    }

    /// <summary>Receives fault-path frames (page, faulted page, timing) until <paramref name="until"/> holds.</summary>
    private static async Task<List<(uint Fault, FaultTiming Timing, int[] Pages)>> ReceiveFaultFrames(FrameChannel channel, int pageCount, Func<List<(uint Fault, FaultTiming Timing, int[] Pages)>, bool> until)
    {
        var frames = new List<(uint Fault, FaultTiming Timing, int[] Pages)>();
        while (frames.Count == 0 || !until(frames))
        {
            (MessageType type, ReadOnlyMemory<byte> payload) = await channel.ReceiveAsync(Timeout);
            Assert.Equal(MessageType.Pages, type);
            var pages = new List<int>();
            (PagePhase phase, uint fault, _) = PageBatchReader.Read(payload.Span, pageCount, new byte[PageSize], (page, _, content) =>
            {
                Assert.Equal(page + 1, BitConverter.ToInt32(content));
                pages.Add(page);
            });
            Assert.Equal(PagePhase.FaultReply, phase);
            frames.Add((fault, PageBatchReader.Timing(payload.Span), [.. pages]));
        }

        return frames;
    }

    [Fact]
    public void PushQueue_sends_the_rest_of_interrupted_windows_before_its_own_order()
    {
        var q = new PushQueue(Pending(100), PushOrder.Linear, 0);
        Assert.True(q.TryClaim(51));
        q.EnqueueWindow(50, 54, 52); // 52 was the faulted page (sent already); 51 is claimed
        q.EnqueueWindow(98, 104, -1); // clipped to RAM
        Assert.Equal(new[] { 50, 53, 98, 99 }, Enumerable.Range(0, 5).Select(_ => q.NextPrefetch()).TakeWhile(p => p >= 0));
        Assert.Equal(-1, q.NextPrefetch());
        Assert.Equal(0, q.Next());
        Assert.True(q.TryClaim(52)); // the window does not claim the faulted page itself
    }

    [Fact]
    public void Receiving_a_page_batch_with_a_struct_visitor_allocates_nothing()
    {
        var writer = new PageBatchWriter(16);
        writer.Begin(PagePhase.FaultReply, 3);
        var content = new byte[PageSize];
        for (int p = 0; p < 16; p++)
        {
            content[0] = (byte)p;
            writer.Add(p, content);
        }

        byte[] payload = writer.Payload.ToArray();
        byte[] scratch = new byte[PageSize];
        var visitor = new CountingVisitor();
        PageBatchReader.Read(payload, 64, scratch, ref visitor); // warm

        // The runtime may allocate on this thread while it tiers the reader up (CI once counted
        // 4,040 bytes in a round), so the check is that some round of 100 batches allocates
        // nothing; a reader that allocated per batch would allocate in every round.
        var rounds = new List<long>();
        for (int round = 0; round < 5 && (rounds.Count == 0 || rounds[^1] != 0); round++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 100; i++)
            {
                PageBatchReader.Read(payload, 64, scratch, ref visitor);
            }

            rounds.Add(GC.GetAllocatedBytesForCurrentThread() - before);
        }

        Assert.True(rounds[^1] == 0, $"bytes allocated by each round of 100 batches: {string.Join(", ", rounds)}");
        Assert.Equal((1 + (100 * rounds.Count)) * 16, visitor.Pages);
    }

    private struct CountingVisitor : IPageVisitor
    {
        public int Pages;

        public void Visit(int page, bool zero, ReadOnlySpan<byte> content) => Pages++;
    }

    [Fact]
    public void RemotePager_records_every_stall()
    {
        using var memory = new GuestMemory(16 * PageSize);
        var pager = new RemotePager(memory, 4);
        Assert.Empty(pager.Stalls());
        long f = Stopwatch.Frequency;
        pager.StallEnded(3, 1000, 1000 + (f / 400));
        pager.StallEnded(3, 1000, 1000 + (f / 25));
        pager.StallEnded(9, 1000, 1000);
        Assert.Equal(new[] { 2.5, 40, 0 }, pager.Stalls().Select(ms => Math.Round(ms, 6)));
        Assert.Equal(0, pager.Faults);
    }

    [Fact]
    public async Task RemotePager_is_told_by_guest_memory_when_a_hart_touches_an_absent_page()
    {
        const int pageCount = 32;
        using var memory = new GuestMemory(pageCount * PageSize);
        memory.Absent.Set(5);
        memory.Absent.Set(6);
        var pager = new RemotePager(memory, 4);
        var sent = Capture(pager, pageCount);
        memory.AbsentPageHandler = pager;

        // A hart blocks in WaitUntilPresent until the page is installed.
        Task<bool> hart = Task.Run(() => memory.WaitUntilPresent(5, CancellationToken.None));
        while (pager.Faults == 0)
        {
            await Task.Delay(1);
        }

        await Task.Delay(20);
        var content = new byte[PageSize];
        content[0] = 9;
        Assert.Equal(5, pager.AwaitedPage);
        Assert.True(memory.InstallPage(5, content)); // tells the pager when, before the hart can see the page
        Assert.True(await hart.WaitAsync(TimeSpan.FromSeconds(10)));

        Assert.Equal(1, pager.Faults);
        Assert.Equal(-1, pager.AwaitedPage);
        double stall = Assert.Single(pager.Stalls());
        Assert.True(stall >= 15, $"the stall of {stall} ms covers the wait");
        Assert.True(memory.WaitUntilPresent(5, CancellationToken.None)); // present now: no fault
        Assert.Equal(1, pager.Faults);
        Assert.Equal(new[] { new PageRequest(5, 4, 4) }, await sent());

        // Its stages: the request was written, but no reply came (installed by hand): it waited in flight.
        FaultStagesReport stages = pager.Stages.Summary();
        Assert.Equal(1, stages.Request.Count);
        Assert.Equal(0, stages.Network.Count);
        Assert.Equal(1, stages.InFlight.Count);
        Assert.True(stages.InFlight.MaxMs >= 15 && stages.InFlight.MaxMs <= stall, $"in flight {stages.InFlight.MaxMs} ms of a {stall} ms stall");
        Assert.Equal(1, stages.Resume.Count);
    }

    [Fact]
    public async Task The_fault_path_threads_run_real_time_only_where_allowed_and_not_when_turned_off()
    {
        bool allowed = ProbeRealtime();
        (FaultPathScheduling Got, int Policy) on = await PrioritizedThread();
        Assert.Equal(allowed, on.Got == FaultPathScheduling.Realtime);
        Assert.Equal(allowed ? 1 : 0, on.Policy);

        DedicatedThread.RealtimeFaultPath = false;   // ferry host --no-realtime
        try
        {
            (FaultPathScheduling Got, int Policy) off = await PrioritizedThread();
            Assert.NotEqual(FaultPathScheduling.Realtime, off.Got);
            Assert.Equal(0, off.Policy);
        }
        finally
        {
            DedicatedThread.RealtimeFaultPath = true;
        }

        static async Task<(FaultPathScheduling, int)> PrioritizedThread()
        {
            (FaultPathScheduling, int) seen = default;
            await DedicatedThread.Start("fault-path", 0, () =>
            {
                int tid = DedicatedThread.CurrentThreadId;
                seen = (DedicatedThread.Prioritize(tid), DedicatedThread.SchedulerPolicy(tid));
            });
            return seen;
        }
    }

    [Fact]
    public async Task A_sleeping_vcpu_is_real_time_where_allowed_and_ordinary_again_once_it_runs()
    {
        bool allowed = ProbeRealtime();
        using var memory = new GuestMemory(16 * PageSize);
        memory.Absent.Set(3);
        var pager = new RemotePager(memory, 1);
        (int Asleep, int Awake) policy = default;
        await DedicatedThread.Start("vcpu", 0, () =>
        {
            int tid = DedicatedThread.CurrentThreadId;
            pager.PageNeeded(3, Stopwatch.GetTimestamp()); // (no fault connection: nothing is sent)
            pager.Sleeping();
            policy.Asleep = DedicatedThread.SchedulerPolicy(tid);
            pager.WaitEnded();
            policy.Awake = DedicatedThread.SchedulerPolicy(tid);
        });

        Assert.Equal(allowed ? 1 : 0, policy.Asleep); // SCHED_FIFO while it sleeps, where the process may
        Assert.Equal(0, policy.Awake);                 // SCHED_OTHER the moment it runs
    }

    /// <summary>Whether a thread of this process may take SCHED_FIFO (tried on a scratch thread).</summary>
    private static bool ProbeRealtime()
    {
        bool allowed = false;
        var t = new Thread(() => allowed = DedicatedThread.SetRealtime(DedicatedThread.CurrentThreadId));
        t.Start();
        t.Join();
        return allowed;
    }

    /// <summary>The pause's deadline: pages chosen for it go only while it lasts; the rest stay owed (cleared from the set, for the push).</summary>
    [Fact]
    public async Task SendUntil_sends_only_before_the_deadline_and_leaves_the_rest_owed()
    {
        using var memory = new GuestMemory(1 << 20);
        (Stream a, Stream b) = InMemoryTransport.CreatePair();
        await using var tx = new FrameChannel(a);
        await using var rx = new FrameChannel(b);
        var books = new SourceBooks(memory.PageCount);
        var sender = new PageSender(tx, memory, books, 32, compress: false);
        var pages = new PageBitmap(memory.PageCount);

        pages.SetAll();
        Assert.Equal(memory.PageCount, await sender.SendUntilAsync(pages, PagePhase.Pause, Stopwatch.GetTimestamp(), CancellationToken.None));
        Assert.Equal(0, pages.PopCount());
        Assert.Equal(0, books.Counters.TotalPages);

        pages.SetAll();
        Assert.Equal(0, await sender.SendUntilAsync(pages, PagePhase.Pause, long.MaxValue, CancellationToken.None));
        Assert.Equal(memory.PageCount, pages.PopCount());
        Assert.Equal(memory.PageCount, books.Counters.TotalPages);
    }

    /// <summary>
    /// On an emulated link the pause's deadline binds the link, not the clock: pages go only
    /// while they would have crossed by the deadline. (Checked against the clock alone, a whole
    /// 32-page batch was filled in microseconds and booked after it: at 100 Mbit/s, 10.7 ms of
    /// link time for a 5 ms budget.)
    /// </summary>
    [Fact]
    public async Task SendUntil_stops_where_the_link_would_pass_the_deadline()
    {
        using GuestMemory memory = NumberedMemory(256); // no zero pages: each goes whole
        (Stream a, Stream b) = InMemoryTransport.CreatePair();
        var shaper = new LinkShaper(100_000_000, burst: TimeSpan.Zero); // a page: 0.33 ms; no credit for the idle link before
        await using var tx = new FrameChannel(a, shaper);
        await using var rx = new FrameChannel(b);
        var books = new SourceBooks(memory.PageCount);
        var sender = new PageSender(tx, memory, books, 32, compress: false);
        var pages = new PageBitmap(memory.PageCount);
        pages.SetAll();
        Task drain = Task.Run(() => LivenessTests.Drain(rx));

        long start = Stopwatch.GetTimestamp();
        long deadline = start + Stopwatch.Frequency / 200; // 5 ms
        int left = await sender.SendUntilAsync(pages, PagePhase.Pause, deadline, CancellationToken.None);
        long linkDone = shaper.BulkDoneAt(Stopwatch.GetTimestamp(), 0);
        int sent = pages.PopCount();
        Assert.Equal(memory.PageCount, sent + left);
        Assert.Equal(sent, books.Counters.TotalPages);
        Assert.InRange(sent, 1, 15); // 5 ms / 0.33 ms
        Assert.True(linkDone <= deadline + Stopwatch.Frequency / 10_000, $"the link is busy until {(linkDone - deadline) * 1000.0 / Stopwatch.Frequency:0.00} ms past the deadline");
        tx.Abort("test over");
        rx.Abort("test over");
        await drain.WaitAsync(TimeSpan.FromSeconds(10));
    }

    /// <summary>A delta applied to the receiver's copy gives the new page exactly, whatever changed; too many changes give no delta.</summary>
    [Fact]
    public void PageDelta_applied_to_the_previous_page_gives_the_current_one()
    {
        Gen.Select(Gen.Byte.Array[PageSize], Gen.Select(Gen.Int[0, PageSize - 1], Gen.Int[1, 64], Gen.Byte).Array[0, 40])
            .Sample((previous, changes) =>
            {
                byte[] current = (byte[])previous.Clone();
                foreach ((int at, int length, byte value) in changes)
                {
                    current.AsSpan(at, Math.Min(length, PageSize - at)).Fill(value);
                }

                byte[] delta = new byte[PageSize];
                int n = PageDelta.Encode(previous, current, delta);
                if (n < 0)
                {
                    return true; // over half a page: sent whole instead
                }

                byte[] page = (byte[])previous.Clone();
                PageDelta.Apply(delta.AsSpan(0, n), page);
                return page.AsSpan().SequenceEqual(current) && n <= PageDelta.MaxLength;
            });

        byte[] a = new byte[PageSize], b = new byte[PageSize];
        b[100] = 1;
        byte[] output = new byte[PageSize];
        Assert.Equal(3, PageDelta.Encode(a, b, output)); // run of 100 unchanged, run of 1, its byte
        Assert.Equal(0, PageDelta.Encode(a, a, output));
        Random.Shared.NextBytes(b);
        Assert.Equal(-1, PageDelta.Encode(a, b, output));
    }

    [Fact]
    public void PageDelta_refuses_a_malformed_delta()
    {
        Gen.Byte.Array[1, 64].Sample(bytes =>
        {
            byte[] page = new byte[PageSize];
            try
            {
                PageDelta.Apply(bytes, page);
            }
            catch (InvalidDataException)
            {
            }
        });
        Assert.Throws<InvalidDataException>(() => PageDelta.Apply([0x80, 0x40, 0x01, 0x00], new byte[PageSize])); // 8192 unchanged: past the page
        Assert.Throws<InvalidDataException>(() => PageDelta.Apply([0x00, 0x05, 0x01], new byte[PageSize])); // 5 bytes promised, 1 given
    }

    [Fact]
    public async Task A_page_sent_again_goes_as_a_delta_and_lands_as_the_whole_page()
    {
        using var source = new GuestMemory(16 * PageSize);
        using var destination = new GuestMemory(16 * PageSize);
        byte[] content = new byte[PageSize];
        content.AsSpan().Fill(7);
        source.LoadPage(3, content);
        (Stream a, Stream b) = InMemoryTransport.CreatePair();
        await using var tx = new FrameChannel(a);
        await using var rx = new FrameChannel(b);
        var books = new SourceBooks(source.PageCount);
        var sender = new PageSender(tx, source, books, 8, compress: false, new SentPageCache(4 * PageSize));
        byte[] scratch = new byte[PageSize];

        async Task ExchangeAsync()
        {
            await sender.BeginAsync(PagePhase.Live, PageBatchWriter.NoFault, CancellationToken.None);
            await sender.SendAsync(3, CancellationToken.None);
            await sender.FlushAsync(CancellationToken.None);
            (MessageType _, ReadOnlyMemory<byte> payload) = await rx.ReceiveAsync(CancellationToken.None);
            PageBatchReader.Read(payload.Span, destination.PageCount, scratch, (page, zero, content) => destination.LoadPage(page, content), destination);
        }

        await ExchangeAsync();
        Assert.Equal(0, books.Counters.DeltaPages);
        content[1000] = 42;
        source.LoadPage(3, content);
        await ExchangeAsync();
        Assert.Equal(1, books.Counters.DeltaPages);
        Assert.True(books.Counters.Bytes(PagePhase.Live) < PageSize + 200, $"{books.Counters.Bytes(PagePhase.Live)} bytes for a whole page and a one-byte change");
        Assert.True(destination.Page(3).SequenceEqual(source.Page(3)));
    }
}
