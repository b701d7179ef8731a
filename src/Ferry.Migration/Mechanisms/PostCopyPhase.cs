using Ferry.Machine.Memory;
using Ferry.Migration.Protocol;
using Ferry.Migration.Transport;

namespace Ferry.Migration.Mechanisms;

/// <summary>
/// The source's post-copy phase on one pair of connections, the same for every strategy that
/// resumes the VM before all its pages are there (and an empty push for one that does not):
/// the background push of what is still owed (faults are served meanwhile by the
/// <see cref="FaultServer"/>), then Complete with the memory digest of the pause, then the
/// destination's verdict. The verdict frame is returned as it came: what it means for the VM's
/// ownership is the caller's.
/// </summary>
internal sealed class PostCopyPhase(GuestMemory memory, SourceBooks books, bool compress, MigrationProgress progress)
{
    /// <param name="main">The main connection: the push and Complete go out on it, the verdict comes back on it.</param>
    /// <param name="queue">What is still owed and the push's order.</param>
    /// <param name="recencyFrom">
    /// The pages the queue was built over, to order its recency tier by the working-set
    /// estimator's history (the fault-neighbourhood-then-recency order only); null once done.
    /// </param>
    /// <param name="flushFirst">The live and pause sender, whose last partial batch goes ahead of the push (first attempt only).</param>
    /// <param name="digest">The memory digest of the pause, for Complete.</param>
    /// <param name="bulk">The bulk connections (<c>--channels N</c>, N ≥ 2), which then carry the push; null: it goes on <paramref name="main"/> (a reconnected migration has none).</param>
    public async Task<(MessageType Type, byte[] Payload)> RunAsync(FrameChannel main, PushQueue queue, PageBitmap? recencyFrom,
        WorkingSetEstimator? estimator, PageSender? flushFirst, Task<(ulong Digest, uint Pages)> digest, StripedSender? bulk = null)
    {
        progress.Phase = SourcePhase.PostCopy;
        using var post = new CancellationTokenSource();
        Task<(MessageType, byte[])> verdict = main.ReceiveCopyAsync(post.Token);
        try
        {
            if (queue.Order == PushOrder.FaultNeighbourhoodThenRecency && recencyFrom is not null && estimator is not null)
            {
                var pending = new PageBitmap(memory.PageCount);
                pending.CopyFrom(recencyFrom);
                queue.SetRecency(estimator.ByRecency(pending));
            }

            if (flushFirst is not null)
            {
                await flushFirst.FlushAsync(CancellationToken.None).ConfigureAwait(false);
            }

            main.LimitKernelBuffers(BackgroundPush.KernelBufferBytes, 0);
            var prefetch = new PageSender(main, memory, books, BackgroundPush.BatchPages, compress);
            if (bulk is not null)
            {
                await bulk.PushAsync(queue, prefetch, () => verdict.IsCompleted).ConfigureAwait(false);
            }
            else
            {
                var push = new PageSender(main, memory, books, BackgroundPush.BatchPages, compress);
                await BackgroundPush.RunAsync(push, prefetch, queue, () => verdict.IsCompleted).ConfigureAwait(false);
            }
            (ulong memoryDigest, uint nonZero) = await digest.ConfigureAwait(false);
            if (!verdict.IsCompleted)
            {
                byte[] complete = new Complete(memoryDigest, nonZero).Encode();
                await main.SendAsync(MessageType.Complete, complete, CancellationToken.None).ConfigureAwait(false);
                books.Counters.AddControl(complete.Length + FrameChannel.HeaderSize);
            }

            // Verification: the destination checks every page against the source's digest.
            progress.Phase = SourcePhase.Verifying;
            return await verdict.WaitAsync(VerdictTimeout, CancellationToken.None).ConfigureAwait(false);
        }
        finally
        {
            post.Cancel();
        }
    }

    /// <summary>How long the destination may take to verify memory once everything was sent.</summary>
    private static readonly TimeSpan VerdictTimeout = TimeSpan.FromMinutes(5);
}
