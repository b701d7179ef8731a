using System.Runtime.CompilerServices;
using Ferry.Migration.Protocol;
using Ferry.Migration.Transport;

namespace Ferry.Migration.Mechanisms;

/// <summary>
/// The source's push of the pages still owed after the destination resumed, on a thread of its
/// own at bulk priority (it yields the CPU to the fault path and the guest on a small host).
/// Before each batch it sends what is pending of the network faults' locality windows (hybrid),
/// in frames of the prefetch class that name no fault; then the push queue's order. It books
/// one small batch at a time on the link, so it never holds more than one batch of link time
/// (<see cref="BatchPages"/> pages: 0.5 ms at 1 Gbit/s) ahead of a window, and it claims a
/// batch's pages, and a window frame's, only once the link could start it (a page it holds
/// unwritten is one a fault waits for, or one the fault path takes and sends twice,
/// <see cref="PushQueue.TryRescue"/>); stops early when told to.
/// </summary>
public static class BackgroundPush
{
    /// <summary>Pages per push batch and per prefetch frame.</summary>
    public const int BatchPages = 16;

    /// <summary>
    /// The kernel buffers of the main connection during the push, at each end: with them the
    /// push has at most about this much in flight beyond the link (a few batches), whatever the
    /// link's rate.
    /// </summary>
    public const int KernelBufferBytes = 256 << 10;

    /// <param name="push">Sends Push batches on the main connection.</param>
    /// <param name="prefetch">Sends locality windows on the main connection (FaultReply frames naming no fault).</param>
    public static Task RunAsync(PageSender push, PageSender prefetch, PushQueue queue, Func<bool> stop)
        => DedicatedThread.Start("ferry-push", DedicatedThread.BulkNice, () => Run(push, prefetch, queue, stop));

    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // the push's whole life: compiled optimized up front, never on stack replacement mid-move
    private static void Run(PageSender push, PageSender prefetch, PushQueue queue, Func<bool> stop)
    {
        // The pages of each batch being filled: held unwritten, a faulted one is the fault path's to send (PushQueue.TryRescue).
        var pushed = new Held(queue);
        var windowed = new Held(queue);
        push.Begin(PagePhase.Push, PageBatchWriter.NoFault, LinkClass.Bulk);
        prefetch.Begin(PagePhase.FaultReply, PageBatchWriter.NoFault, LinkClass.Prefetch);
        while (!stop())
        {
            // Windows first, each page claimed as it goes (the fault path may have sent it),
            // and each frame's pages only when the link can take the frame: a page held
            // meanwhile is one the fault path would have to send again.
            while (queue.HasWindows)
            {
                if (prefetch.Count == 0)
                {
                    prefetch.WaitForPrefetchTurn();
                }

                int page = queue.NextPrefetch();
                if (page < 0)
                {
                    break;
                }

                windowed.Add(page);
                if (prefetch.Add(page))
                {
                    windowed.Flush(prefetch, LinkClass.Prefetch);
                }
            }

            windowed.Flush(prefetch, LinkClass.Prefetch);
            if (push.Count == 0)
            {
                // A batch's pages are claimed only when the link can take the batch: claimed
                // earlier, they would wait behind every window booked meanwhile (prefetch goes
                // first), and a guest that faults on one waits with them.
                push.WaitForBulkTurn();
                if (queue.HasWindows)
                {
                    continue;
                }
            }

            int next = queue.Next();
            if (next < 0)
            {
                break;
            }

            pushed.Add(next);
            if (push.Add(next))
            {
                pushed.Flush(push, LinkClass.Bulk);
            }
        }

        pushed.Flush(push, LinkClass.Bulk);
    }

    /// <summary>The pages of one batch in the filling, released to the queue as written once the batch is sent.</summary>
    private sealed class Held(PushQueue queue)
    {
        private readonly int[] _pages = new int[BatchPages];
        private int _count;

        public void Add(int page) => _pages[_count++] = page;

        public void Flush(PageSender sender, LinkClass linkClass)
        {
            sender.Flush(linkClass);
            queue.Written(_pages.AsSpan(0, _count));
            _count = 0;
        }
    }
}
