using System.Diagnostics;
using Ferry.Machine.Memory;
using Ferry.Machine.State;
using Ferry.Migration.Metrics;
using Ferry.Migration.Protocol;
using Ferry.Migration.Strategies;
using Ferry.Migration.Transport;

namespace Ferry.Migration.Mechanisms;

/// <summary>
/// The source's switchover, the same for every strategy: <see cref="PauseAsync"/> pauses the VM,
/// collects the last dirty pages, sends the pages the policy chose for the pause (within the
/// pause budget where pages may follow the resume), queues what is still owed for the push,
/// saves the CPU and devices (and completes the page file, if one is written); then, once the
/// caller has passed its point of no return, <see cref="HandOverAsync"/> sends the state and
/// waits for the destination's Resumed. It keeps the timestamps the report's downtime and
/// switchover breakdown are made of (0 until reached).
/// </summary>
internal sealed class Switchover(SourceContext context, WorkingSetEstimator estimator, FaultServer faultServer)
{
    private readonly StrategyPolicy _policy = context.Policy;

    /// <summary>The VM is paused here (from the pause on: a failure before the handover resumes it here).</summary>
    public bool Paused { get; private set; }

    /// <summary>Stopwatch timestamps of the pause, the pause pages chosen and sent, the state sent and the Resumed received.</summary>
    public long PauseAt { get; private set; }

    public long SelectedAt { get; private set; }

    public long PausePagesSentAt { get; private set; }

    public long BundleSentAt { get; private set; }

    public long ResumedReceivedAt { get; private set; }

    /// <summary>The devices' DMA pages neither delivered nor in the pause (the push sends them first).</summary>
    public int DevicePages { get; private set; }

    /// <summary>The state bundle's size on the wire, frame header included.</summary>
    public long BundleBytes { get; private set; }

    public ulong InstructionsAtPause { get; private set; }

    /// <summary>Pages still owed after the pause (the destination resumes with them absent).</summary>
    public PageBitmap? Remaining { get; private set; }

    /// <summary>The push queue over <see cref="Remaining"/>, the devices' pages first; the fault server serves from it.</summary>
    public PushQueue? Queue { get; private set; }

    /// <summary>The memory digest taken in the pause for the page file, if one was written (else the caller hashes memory after the handover).</summary>
    public Task<(ulong Digest, uint Pages)>? DigestAtPause { get; private set; }

    public PageFileReport? PageFileReport { get; private set; }

    private StateBundle? _bundle;

    /// <summary>
    /// Pauses the VM and prepares everything the destination needs to resume it: the last dirty
    /// pages, the pause pages, the push queue (the fault server starts serving from it), and
    /// the state bundle. Nothing of the state has left when this returns.
    /// </summary>
    /// <param name="pageFile">The page file opened while the VM ran (post-copy phase ahead), completed here before the state may leave.</param>
    /// <param name="pageFileLiveMs">What writing the page file's live part took, for its report.</param>
    public async Task PauseAsync(PageFile? pageFile, double pageFileLiveMs, CancellationToken ct)
    {
        IMigrationSource vm = context.Vm;
        GuestMemory memory = context.Memory;
        MigrationOptions options = context.Options;
        await vm.PauseAsync(ct).ConfigureAwait(false);
        vm.Machine.NetworkDepart(); // the bridge forgets this port for the VM (it comes back up if the VM runs here again)
        vm.Machine.Throttle = 0; // auto-converge ends with the live phase
        Paused = true;
        PauseAt = Stopwatch.GetTimestamp();
        ct.ThrowIfCancellationRequested();
        PageBitmap dirtiedLast = await context.CollectDirtyAsync().ConfigureAwait(false);
        if (_policy.UsesWorkingSet)
        {
            estimator.CloseWindow(); // the VM is paused: include what it touched since the last window
        }

        PageBitmap pausePages = _policy.SelectPausePages(context);

        // The devices' next pages (their rings, a network card's posted receive buffers) are
        // what the guest's clients wait on first: a working set's pause carries the rings and
        // the next few buffers (a few pages: the buffers of the next frames), and the push
        // sends the rest of them first (all of them, after a pause without a working set).
        PageBitmap deviceSoon = vm.Machine.DeviceDmaPages(SourceContext.DeviceChainsInPause);
        PageBitmap devicePages = vm.Machine.DeviceDmaPages();
        deviceSoon.AndNot(context.Delivered);
        deviceSoon.AndNot(pausePages);
        devicePages.AndNot(context.Delivered);
        devicePages.AndNot(pausePages);
        DevicePages = devicePages.PopCount();
        if (_policy.UsesWorkingSet)
        {
            pausePages.Or(deviceSoon);
        }

        SelectedAt = Stopwatch.GetTimestamp();
        if (_policy.ResumesBeforeAllPages)
        {
            // What may arrive later is sent only while the pause budget lasts (less the reserve
            // for the state and the resume); the rest of it goes after the resume.
            long deadline = PauseAt + (long)((_policy.PauseBudget(options) - SourceContext.PauseReserve).TotalSeconds * Stopwatch.Frequency);
            context.PausePagesDeferred = await context.Sender.SendUntilAsync(pausePages, PagePhase.Pause, deadline, ct).ConfigureAwait(false);
        }
        else
        {
            await context.Sender.SendAllAsync(pausePages, PagePhase.Pause, ct).ConfigureAwait(false);
        }

        if (context.Sender is StripedSender striped)
        {
            await striped.SyncAsync(ct).ConfigureAwait(false); // the destination checks the digest once every bulk connection is through
        }

        PausePagesSentAt = Stopwatch.GetTimestamp();
        context.MarkDelivered(pausePages);
        PageBitmap remaining = context.Undelivered();
        int remainingCount = remaining.PopCount();
        if (!_policy.ResumesBeforeAllPages && remainingCount != 0)
        {
            throw new InvalidOperationException($"pre-copy left {remainingCount} pages undelivered at switchover");
        }

        var queue = new PushQueue(remaining, _policy.PushOrderFor(options), options.FaultNeighbourhoodPages);
        EnqueueRuns(queue, deviceSoon); // (what the pause carried is no longer pending: the queue skips it)
        EnqueueRuns(queue, devicePages);
        Remaining = remaining;
        Queue = queue;

        faultServer.Start(queue);

        MachineState state = vm.Machine.SaveState();
        InstructionsAtPause = state.Hart.InstructionsRetired;
        if (pageFile is not null)
        {
            CompletePageFile(pageFile, pageFileLiveMs, remaining, remainingCount, dirtiedLast);
        }

        _bundle = new StateBundle(StateCodec.Encode(state), remainingCount > 0 ? remaining.Words.ToArray() : null,
            context.Books.Sent.Digest, (uint)context.Books.Sent.NonZeroPages);
    }

    /// <summary>
    /// The rest of the page file, durable before the state leaves: the owed pages the VM dirtied
    /// since the live part (or that were not owed then), and the digest.
    /// </summary>
    private void CompletePageFile(PageFile pageFile, double pageFileLiveMs, PageBitmap remaining, int remainingCount, PageBitmap dirtiedLast)
    {
        GuestMemory memory = context.Memory;
        long writeStart = Stopwatch.GetTimestamp();
        (ulong d, uint n) = PageHash.OfMemory(memory);
        DigestAtPause = Task.FromResult((d, n));
        var rewrite = new PageBitmap(memory.PageCount); // remaining ∖ held
        rewrite.CopyFrom(remaining);
        rewrite.AndNot(pageFile.Pages!);
        var clean = new PageBitmap(memory.PageCount); // remaining ∖ dirtied
        clean.CopyFrom(remaining);
        clean.AndNot(dirtiedLast);
        var dirtied = new PageBitmap(memory.PageCount); // remaining ∩ dirtied
        dirtied.CopyFrom(remaining);
        dirtied.AndNot(clean);
        rewrite.Or(dirtied);
        pageFile.Append(memory, rewrite);
        (_, long bytes) = pageFile.Complete(d, n);
        PageFileReport = new PageFileReport(remainingCount, bytes, pageFileLiveMs, Stopwatch.GetElapsedTime(writeStart).TotalMilliseconds, rewrite.PopCount());
    }

    /// <summary>
    /// Sends the state bundle, as urgent traffic, and waits for the destination's Resumed
    /// (<paramref name="expectResumed"/> receives it, or throws on anything else).
    /// </summary>
    public async Task<Resumed> HandOverAsync(FrameChannel main, Func<Task<ReadOnlyMemory<byte>>> expectResumed)
    {
        byte[] encoded = (_bundle ?? throw new InvalidOperationException("the switchover has not paused the VM")).Encode();
        await main.SendAsync(MessageType.StateBundle, encoded, CancellationToken.None, urgent: true).ConfigureAwait(false);
        BundleSentAt = Stopwatch.GetTimestamp();
        BundleBytes = encoded.Length + FrameChannel.HeaderSize;
        context.Books.Counters.AddControl(encoded.Length + FrameChannel.HeaderSize);
        ReadOnlyMemory<byte> resumed = await expectResumed().ConfigureAwait(false);
        ResumedReceivedAt = Stopwatch.GetTimestamp();
        return Resumed.Decode(resumed.Span);
    }

    /// <summary>
    /// When the VM resumed at the destination: exact when both hosts share this machine's
    /// monotonic clock; else our part (pause → state sent), the state's time on the link and
    /// its propagation (half the handshake's round trip), and the destination's part.
    /// </summary>
    public (long ResumeAt, string Method) ResumeTime(Resumed at, LinkShaper shaper, double handshakeRttMs)
    {
        if (at.BootId == MonotonicClock.BootId && MonotonicClock.SharedAcrossProcesses && at.MonotonicTicks > PauseAt && at.MonotonicTicks <= ResumedReceivedAt)
        {
            return (at.MonotonicTicks, "shared-clock");
        }

        double transitMs = shaper.Transmission(BundleBytes).TotalMilliseconds + (handshakeRttMs / 2);
        return (Math.Min(ResumedReceivedAt, BundleSentAt + (long)((transitMs + at.SwitchoverMs) * Stopwatch.Frequency / 1000)), "estimated");
    }

    /// <summary>What the switchover runs at the source, once, for nothing (safe point only): the state and the devices' pages.</summary>
    public static void WarmUp(Ferry.Machine.Board.VirtMachine machine)
    {
        byte[] state = StateCodec.Encode(machine.SaveState());
        _ = new StateBundle(state, null, 0, 0).Encode();
        _ = machine.DeviceDmaPages(SourceContext.DeviceChainsInPause).PopCount();
    }

    /// <summary>Queues <paramref name="pages"/> ahead of the push, as runs of consecutive pages.</summary>
    private static void EnqueueRuns(PushQueue queue, PageBitmap pages)
    {
        int first = -1, end = -1;
        foreach (int page in pages.EnumerateSet())
        {
            if (page != end)
            {
                queue.EnqueueWindow(first, end, -1);
                first = page;
            }

            end = page + 1;
        }

        queue.EnqueueWindow(first, end, -1);
    }
}
