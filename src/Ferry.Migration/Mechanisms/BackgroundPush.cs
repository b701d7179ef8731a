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
/// batch's pages only once the link could start it; stops early when told to.
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
        => DedicatedThread.Start("ferry-push", DedicatedThread.BulkNice, () =>
        {
            push.Begin(PagePhase.Push, PageBatchWriter.NoFault, LinkClass.Bulk);
            prefetch.Begin(PagePhase.FaultReply, PageBatchWriter.NoFault, LinkClass.Prefetch);
            while (!stop())
            {
                // Windows first, each page claimed as it goes (the fault path may have sent it).
                for (int page = queue.NextPrefetch(); page >= 0; page = queue.NextPrefetch())
                {
                    if (prefetch.Add(page))
                    {
                        prefetch.Flush(LinkClass.Prefetch);
                    }
                }

                prefetch.Flush(LinkClass.Prefetch);
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

                if (push.Add(next))
                {
                    push.Flush(LinkClass.Bulk);
                }
            }

            push.Flush(LinkClass.Bulk);
        });
}
