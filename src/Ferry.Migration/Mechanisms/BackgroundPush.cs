using Ferry.Migration.Protocol;
using Ferry.Migration.Transport;

namespace Ferry.Migration.Mechanisms;

/// <summary>
/// The source's push of the pages still owed after the destination resumed, in the push
/// queue's order, on a thread of its own at bulk priority (it yields the CPU to the fault path
/// and the guest on a small host). Books one batch at a time on the link, so it never holds more
/// than one batch of link time ahead of a fault reply; stops early when told to.
/// </summary>
public static class BackgroundPush
{
    public static Task RunAsync(PageSender sender, PushQueue queue, Func<bool> stop)
        => DedicatedThread.Start("ferry-push", DedicatedThread.BulkNice, () =>
        {
            sender.Begin(PagePhase.Push, PageBatchWriter.NoFault, LinkClass.Bulk);
            for (int page = queue.Next(); page >= 0; page = queue.Next())
            {
                if (stop())
                {
                    break; // the destination gave up (or answered early): stop pushing
                }

                if (sender.Add(page))
                {
                    sender.Flush(LinkClass.Bulk);
                }
            }

            sender.Flush(LinkClass.Bulk);
        });
}
