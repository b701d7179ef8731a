using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Text.Json;
using Ferry.Machine.Memory;
using Ferry.Machine.State;
using Ferry.Migration.Mechanisms;
using Ferry.Migration.Metrics;
using Ferry.Migration.Protocol;
using Ferry.Migration.Transport;

namespace Ferry.Migration;

/// <summary>
/// The destination side of one migration, after the host accepted the main connection's
/// Hello: receives pages into the new VM, checks what arrived before resuming it, serves its
/// network faults through the remote pager, and verifies the whole memory against the
/// source's digest before the source lets the VM go. Every frame is validated against this
/// VM's configuration; anything malformed fails the migration and discards the VM here.
/// </summary>
public sealed class DestinationMigration
{
    private readonly Hello _hello;
    private readonly IIncomingVm _vm;
    private readonly FrameChannel _main;
    private readonly Task<FrameChannel> _faultChannel;
    private readonly PageHashLedger _received;
    private readonly byte[] _arrival;
    private readonly long[] _arrivals = new long[6];
    private readonly List<TimelinePoint> _timeline = [];
    private RemotePager? _pager;
    private int _faultPathReady; // set once the pager is in place: fault replies are accepted from then on
    private int _absentRemaining;
    private long _resumeAt, _residentAt;
    private ulong _instretAtResume, _instretAtResident;
    private FaultPathScheduling _faultThreadScheduling;
    private int _gcAtResume, _gcAtResident;
    private volatile bool _guestAnnounceDeferred;
    private TimeSpan _gcPauseAtResume, _gcPauseAtResident;
    private JitMark _jitAtResume;
    private JitActivity? _jitPostCopy;
    private readonly TaskCompletionSource _resident = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly List<FrameChannel> _owned = [];
    private readonly List<FrameChannel> _current = []; // the connections in use (guarded by _owned)
    private TaskCompletionSource<(FrameChannel, Task<FrameChannel>)> _reconnect = new();
    private PeerLiveness? _liveness;
    private bool _started;
    private int _interruptions;
    private readonly Task<FrameChannel[]> _bulkChannels;
    private FrameChannel[] _bulk = [];
    private Task _bulkReceivers = Task.CompletedTask;
    private readonly ManualResetEventSlim _bulkSwitched = new(); // set once absent pages are marked: the bulk receivers install from then on

    /// <param name="bulkChannels">The bulk connections when Hello announced N ≥ 2 channels (<see cref="IncomingMigration.Bulk"/>); else none.</param>
    public DestinationMigration(Hello hello, IIncomingVm vm, FrameChannel main, Task<FrameChannel> faultChannel, Task<FrameChannel[]>? bulkChannels = null)
    {
        _ = RuntimeSuspensions.Process;
        _bulkChannels = bulkChannels ?? Task.FromResult<FrameChannel[]>([]);
        _hello = hello;
        _vm = vm;
        _main = main;
        _faultChannel = faultChannel;
        _received = new PageHashLedger(Memory.PageCount);
        _arrival = new byte[Memory.PageCount];
    }

    public DestinationPhase Phase { get; private set; } = DestinationPhase.Receiving;

    public long NetworkFaults => _pager?.Faults ?? 0;

    private GuestMemory Memory => _vm.Machine.Memory;

    /// <summary>
    /// Runs to completion; throws (after discarding the VM here) if the migration fails before
    /// the VM resumed here, or if its memory does not verify. After the resume a lost or silent
    /// source never makes it throw: the VM stays here, waiting for its missing pages, until the
    /// source reconnects (<see cref="AcceptResumeAsync"/>) or the host stops.
    /// </summary>
    public async Task RunAsync(CancellationToken cancellation)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        CancellationToken ct = stop.Token;
        FrameChannel main = _main;
        SetCurrent(main);
        var liveness = new PeerLiveness(TimeSpan.FromMilliseconds(_hello.PeerTimeoutMs), "source");
        liveness.Watch(main);
        _liveness = liveness;
        using IDisposable gcQuiet = GcQuiet.Enter(); // (from before the VM runs here to the final report: no collection while the VM's clients wait)
        try
        {
            FrameChannel fault = await _faultChannel.WaitAsync(TimeSpan.FromMilliseconds(_hello.PeerTimeoutMs), ct).ConfigureAwait(false);
            liveness.Watch(fault);
            SetCurrent(main, fault);
            byte[] scratch = new byte[GuestMemory.PageSize];
            Task[] bulkSynced = await StartBulkReceiversAsync(main, fault, liveness, ct).ConfigureAwait(false);

            // The fault path is ready before the switchover, so that its thread costs nothing in
            // the pause: the receiver blocks on the fault connection until replies come (or the
            // connection closes when the migration ends).
            fault.EnterKernelBlockingMode();
            Task faultReceiver = DedicatedThread.Start("ferry-fault-replies", DedicatedThread.FaultPathNice, () => ReceiveFaultReplies(fault));
            _ = faultReceiver.ContinueWith(t => StopIfPagesAreMissing(t, main), TaskScheduler.Default);

            // The switchover's code runs once now, on the VM's own fresh state (a no-op restore), so
            // that the pause does not pay for its first compilation (3-14 ms of a first move's pause
            // here). It is done before the state can arrive: awaited before the real restore.
            Task warm = Task.Run(WarmUpSwitchover, CancellationToken.None);

            // The fault path's tables are built now too, not in the pause: a page-owner table of 4
            // bytes a page, the stages' lists and two page bitmaps, several hundred KiB to allocate
            // and clear (0.1 to 0.6 ms of the destination's part of a pause, traced on this machine).
            var pager = new RemotePager(Memory, _hello.LocalityPages, _hello.LocalityAdaptive);
            var absent = new PageBitmap(Memory.PageCount);

            // Before switchover: pages into a VM that does not run yet. Its network cards discard
            // what the bridge floods to them until the source pauses (its first pause pages, or the
            // state), and from then on keep it for the VM.
            _vm.Machine.NetworkStandBy();
            StateBundle bundle;
            long bundleAt;
            while (true)
            {
                (MessageType type, ReadOnlyMemory<byte> payload) = await main.ReceiveAsync(ct).ConfigureAwait(false);
                if (type == MessageType.Pages)
                {
                    if (_bulk.Length > 0)
                    {
                        throw new ProtocolException("pages before the switchover must come on the bulk connections");
                    }

                    if (PageBatchReader.Header(payload.Span).Phase == PagePhase.Pause)
                    {
                        _vm.Machine.NetworkHold();
                    }

                    ReceivePages(payload.Span, scratch, running: false);
                    continue;
                }

                if (type == MessageType.StateBundle)
                {
                    _vm.Machine.NetworkHold();
                    bundleAt = Stopwatch.GetTimestamp();
                    bundle = StateBundle.Decode(payload.Span, Memory.PageCount);

                    // Every bulk connection delivered what it carries before the switchover (its ChannelSync).
                    await Task.WhenAll(bulkSynced).WaitAsync(TimeSpan.FromMilliseconds(_hello.PeerTimeoutMs), ct).ConfigureAwait(false);
                    break;
                }

                throw FrameChannel.Unexpected(type, payload, "Pages or StateBundle");
            }

            // Switchover: check what arrived, restore CPU and devices, mark what is still to come, resume.
            Phase = DestinationPhase.Switchover;
            long restoreStart = Stopwatch.GetTimestamp();
            if (bundle.SentDigest != _received.Digest || bundle.SentPages != (uint)_received.NonZeroPages)
            {
                throw new ProtocolException($"pages received before switchover do not match the source's digest ({_received.NonZeroPages} of {bundle.SentPages} non-zero pages)");
            }

            await warm.ConfigureAwait(false);
            long allocatedAtRestore = GC.GetAllocatedBytesForCurrentThread(); // (from here to the resume: one thread, no await)
            MachineState state;
            try
            {
                state = StateCodec.Decode(bundle.MachineState);
            }
            catch (InvalidDataException e)
            {
                throw new ProtocolException("machine state: " + e.Message);
            }

            if (state.Config.MemorySize != _hello.Machine.MemorySize || state.Config.Icount != _hello.Machine.Icount)
            {
                throw new ProtocolException("machine state does not match the configuration announced in Hello");
            }

            try
            {
                _vm.Machine.RestoreState(state);
            }
            catch (InvalidDataException e)
            {
                throw new ProtocolException("machine state: " + e.Message); // devices this host's VM does not have, say
            }

            Memory.Accessed.ClearAll();
            if (bundle.AbsentPages is not null)
            {
                bundle.AbsentPages.CopyTo(absent.Words);
                _absentRemaining = absent.PopCount();
                _pager = pager;
                _pager.Attach(fault);
                Memory.MarkAbsent(absent);
                Memory.AbsentPageHandler = _pager;
                Volatile.Write(ref _faultPathReady, 1);
            }

            if (_absentRemaining == 0)
            {
                MarkResident();
            }

            _bulkSwitched.Set();
            double restoreMs = Stopwatch.GetElapsedTime(restoreStart).TotalMilliseconds;
            _gcAtResume = GC.CollectionCount(0);
            _gcPauseAtResume = GC.GetTotalPauseDuration();
            _jitAtResume = JitActivity.Mark();
            // Network cards: the held frames, and the host's RARP (the network learns the new port);
            // the guest's own ARPs once its memory is all here (their code is cold: faults the clients would wait behind).
            _guestAnnounceDeferred = _absentRemaining != 0;
            _vm.Machine.AnnounceAfterMove(guestToo: !_guestAnnounceDeferred);
            _instretAtResume = _vm.Machine.Hart.InstructionsRetired;
            _vm.Start();
            _started = true;
            _resumeAt = Stopwatch.GetTimestamp();
            _switchoverAllocated = GC.GetAllocatedBytesForCurrentThread() - allocatedAtRestore;
            double switchMs = (_resumeAt - bundleAt) * 1000.0 / Stopwatch.Frequency;
            using var sampling = CancellationTokenSource.CreateLinkedTokenSource(ct);
            _ = SampleAsync(sampling.Token);

            // Post-copy phase: pushed pages on the main connection, fault replies on the other.
            // From here on the VM is this host's: a lost or silent source pauses the migration
            // (the VM keeps every page it has and runs until it needs a missing one) until the
            // source reconnects; it never discards the VM.
            bool first = true;
            while (true)
            {
                try
                {
                    if (first)
                    {
                        first = false;
                        await main.SendAsync(MessageType.Resumed, new Resumed(switchMs, _resumeAt, MonotonicClock.BootId).Encode(), ct, urgent: true).ConfigureAwait(false);
                    }

                    Phase = DestinationPhase.PostCopy;
                    main.LimitKernelBuffers(0, BackgroundPush.KernelBufferBytes);

                    // The push arrives on a thread of its own at bulk priority: the guest and its faults come first.
                    Complete? completed = null;
                    FrameChannel pushChannel = main;
                    await DedicatedThread.Start("ferry-push-receiver", DedicatedThread.ReceiverNice, () => completed = ReceivePush(pushChannel, scratch)).WaitAsync(ct).ConfigureAwait(false);
                    Complete complete = completed!;

                    // Verification: every page arrived, and their digest is the source's memory digest.
                    Phase = DestinationPhase.Verifying;
                    await WhenResidentAsync(main, ct).ConfigureAwait(false);
                    bool ok = complete.MemoryDigest == _received.Digest && complete.NonZeroPages == (uint)_received.NonZeroPages;
                    string message = ok ? "memory verified" : $"memory digest mismatch: {_received.NonZeroPages} non-zero pages here, {complete.NonZeroPages} at the source";
                    await main.SendAsync(MessageType.Verified, new Verified(ok, message, Metrics(restoreMs, null)).Encode(), ct).ConfigureAwait(false);
                    if (!ok)
                    {
                        throw new ProtocolException(message);
                    }

                    break;
                }
                catch (Exception e) when (!cancellation.IsCancellationRequested && LinkFailure.Is(e))
                {
                    (main, fault, faultReceiver) = await RecoverAsync(e, main, fault, faultReceiver, scratch, ct).ConfigureAwait(false);
                }
            }

            Phase = DestinationPhase.Completed;
            Memory.AbsentPageHandler = null;
            _pager?.Finished();
            _vm.Completed();

            // The guest's speed after the migration, for the source's report (best effort).
            await Task.Delay(500, ct).ConfigureAwait(false);
            sampling.Cancel();
            long now = Stopwatch.GetTimestamp();
            double? after = _vm.Rate.Rate(Math.Max(_residentAt, now - Stopwatch.Frequency), now);
            await main.SendAsync(MessageType.Report, Metrics(restoreMs, after), ct).ConfigureAwait(false);
        }
        catch (Exception e) when (Phase != DestinationPhase.Completed)
        {
            Phase = DestinationPhase.Failed;
            stop.Cancel();
            _vm.Abort(_started ? "migration failed after switchover: " + e.Message : "migration failed: " + e.Message);
            try
            {
                await main.SendAsync(MessageType.Failed, ReasonMessage.Encode(e.Message), CancellationToken.None).AsTask()
                    .WaitAsync(TimeSpan.FromSeconds(2), CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception)
            {
                // The source may be gone; it keeps (or resumes) its copy either way.
            }

            throw;
        }
        catch (Exception) when (Phase == DestinationPhase.Completed)
        {
            // After verification the VM is ours: a lost Report is not a failure.
        }
        finally
        {
            _liveness?.Dispose();
            _reconnect.TrySetCanceled(CancellationToken.None);
            FrameChannel[] owned;
            lock (_owned)
            {
                owned = [.. _owned];
            }

            foreach (FrameChannel c in owned)
            {
                await c.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    private void SetCurrent(params FrameChannel[] channels)
    {
        lock (_owned)
        {
            _current.Clear();
            _current.AddRange(channels);
        }
    }

    /// <summary>Waits until every page is here; a silent or lost source still fails the wait (the liveness monitor aborts the connection).</summary>
    private async Task WhenResidentAsync(FrameChannel main, CancellationToken ct)
    {
        if (_resident.Task.IsCompleted)
        {
            return;
        }

        // Nothing but heartbeats comes on the main connection now: a receive in progress consumes
        // them (so the source's silence is measured) and fails if the connection does.
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        Task<(MessageType, ReadOnlyMemory<byte>)> next = main.ReceiveAsync(stop.Token).AsTask();
        _ = next.ContinueWith(t => t.Exception, TaskScheduler.Default);
        while (!_resident.Task.IsCompleted)
        {
            if (main.AbortReason is string reason)
            {
                throw new PeerTimeoutException(reason);
            }

            if (next.IsFaulted)
            {
                throw next.Exception!.InnerException!;
            }

            if (next.IsCompletedSuccessfully)
            {
                throw FrameChannel.Unexpected(next.Result.Item1, next.Result.Item2, "nothing before Verified");
            }

            await Task.WhenAny(_resident.Task, next, Task.Delay(50, ct)).ConfigureAwait(false);
            ct.ThrowIfCancellationRequested();
        }

        await stop.CancelAsync().ConfigureAwait(false);
        await next.ContinueWith(_ => { }, TaskScheduler.Default).ConfigureAwait(false);
    }

    /// <summary>
    /// The source was lost after the resume: say at once how many pages are missing, keep the
    /// VM, and wait for the source to reconnect (any number of times); then tell it which pages
    /// are still absent and go on with the new connections.
    /// </summary>
    private async Task<(FrameChannel Main, FrameChannel Fault, Task FaultReceiver)> RecoverAsync(Exception cause, FrameChannel main, FrameChannel fault,
        Task faultReceiver, byte[] scratch, CancellationToken ct)
    {
        while (true)
        {
            // The slot a reconnecting source's connections go to exists before the phase says
            // Paused: a source that reconnects at once (while the old receivers drain) hands
            // them to this wait, not to the slot of an earlier attempt that nothing awaits.
            var reconnect = new TaskCompletionSource<(FrameChannel, Task<FrameChannel>)>(TaskCreationOptions.RunContinuationsAsynchronously);
            Volatile.Write(ref _reconnect, reconnect);

            // Both connections of the failed attempt end, and their receivers with them, before
            // the pages still absent are counted: nothing of the old attempt lands after that.
            Phase = DestinationPhase.Paused;
            string reason = cause is PeerTimeoutException ? cause.Message : "connection to the source lost: " + cause.Message;
            main.Abort(reason);
            fault.Abort(reason);
            foreach (FrameChannel bulk in _bulk)
            {
                bulk.Abort(reason); // a reconnected source pushes on its main connection
            }

            _pager?.Detach();
            // Never a reason to give up the VM: past this wait a late receiver can only install a page twice (once).
            await Task.WhenAny(Task.WhenAll(faultReceiver, _bulkReceivers), Task.Delay(TimeSpan.FromSeconds(10), ct)).ConfigureAwait(false);
            _liveness?.Dispose();
            _interruptions++;
            int missing = Volatile.Read(ref _absentRemaining);
            UnrecoverablePages = missing;
            SourceLost?.Invoke(missing, reason);
            _vm.WaitingOnNetwork($"waiting for the source: {missing} pages not yet here ({reason}); the VM keeps running until it needs one");

            (FrameChannel newMain, Task<FrameChannel> newFaultTask) = await reconnect.Task.WaitAsync(ct).ConfigureAwait(false);
            var liveness = new PeerLiveness(TimeSpan.FromMilliseconds(_hello.PeerTimeoutMs), "source");
            liveness.Watch(newMain);
            _liveness = liveness;
            lock (_owned)
            {
                _owned.Add(newMain);
            }

            SetCurrent(newMain);
            try
            {
                var absent = new PageBitmap(Memory.PageCount);
                absent.CopyFrom(Memory.Absent);
                await newMain.SendAsync(MessageType.ResumeState, new ResumeState(ResumeStatus.RunningHere, absent.Words.ToArray()).Encode(), ct, urgent: true).ConfigureAwait(false);
                FrameChannel newFault = await newFaultTask.WaitAsync(TimeSpan.FromMilliseconds(_hello.PeerTimeoutMs), ct).ConfigureAwait(false);
                lock (_owned)
                {
                    _owned.Add(newFault);
                }

                SetCurrent(newMain, newFault);
                liveness.Watch(newFault);
                newFault.EnterKernelBlockingMode();
                Task receiver = DedicatedThread.Start("ferry-fault-replies", DedicatedThread.FaultPathNice, () => ReceiveFaultReplies(newFault));
                _ = receiver.ContinueWith(t => StopIfPagesAreMissing(t, newMain), TaskScheduler.Default);
                _pager?.Attach(newFault);
                _pager?.Reissue();
                UnrecoverablePages = 0;
                _vm.WaitingOnNetwork(null);
                return (newMain, newFault, receiver);
            }
            catch (Exception e) when (!ct.IsCancellationRequested && LinkFailure.Is(e) || e is TimeoutException)
            {
                cause = e;
                main = newMain;
                fault = newFaultTask.IsCompletedSuccessfully ? newFaultTask.Result : newMain;
                faultReceiver = Task.CompletedTask;
            }
        }
    }

    /// <summary>
    /// A source reconnects to this migration (same token, Resume flag; Welcome already sent).
    /// The source has given up on the old connections, so they are aborted if this side has not
    /// noticed yet; then, once the migration has paused, it takes the new ones (it sends
    /// ResumeState on <paramref name="main"/> itself): <see cref="ResumeStatus.RunningHere"/>.
    /// <see cref="ResumeStatus.NotResumed"/> if the VM does not run here (never resumed, or
    /// discarded); <see cref="ResumeStatus.Completed"/> if every page is here and verified (the
    /// source lost the Verified frame with the link); null if the migration did not settle within two deadlines.
    /// </summary>
    public async Task<ResumeStatus?> AcceptResumeAsync(FrameChannel main, Task<FrameChannel> fault, CancellationToken ct)
    {
        long until = Stopwatch.GetTimestamp() + (2 * _hello.PeerTimeoutMs * Stopwatch.Frequency / 1000);
        while (Stopwatch.GetTimestamp() < until)
        {
            switch (Phase)
            {
                case DestinationPhase.Failed:
                    return ResumeStatus.NotResumed;
                case DestinationPhase.Completed:
                    return ResumeStatus.Completed; // (verified: the source's verdict was lost with the link)
                case DestinationPhase.Paused:
                    if (Volatile.Read(ref _reconnect).TrySetResult((main, fault)))
                    {
                        return ResumeStatus.RunningHere;
                    }

                    break;
                default:
                    FrameChannel[] current;
                    lock (_owned)
                    {
                        current = [.. _current];
                    }

                    foreach (FrameChannel c in current)
                    {
                        c.Abort("the source reconnected: it gave up on this connection");
                    }

                    break;
            }

            await Task.Delay(10, ct).ConfigureAwait(false);
        }

        return null;
    }

    /// <summary>Raised at once when the source is lost after the resume: the pages missing here, and why.</summary>
    public event Action<int, string>? SourceLost;

    /// <summary>Pages the VM lacks while the source is away (0 while connected): what would be lost if it never came back.</summary>
    public int UnrecoverablePages { get; private set; }

    /// <summary>Times the source was lost after the resume (each followed by a reconnection, or still waiting).</summary>
    public int Interruptions => _interruptions;

    /// <summary>The post-copy phase's main connection: pushed pages until Complete (blocking, on the push receiver's thread).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // a receiver's whole life: compiled optimized up front, never on stack replacement mid-move
    private Complete ReceivePush(FrameChannel main, byte[] scratch)
    {
        while (true)
        {
            (MessageType type, ReadOnlyMemory<byte> payload) = main.Receive();
            if (type == MessageType.Pages)
            {
                ReceivePages(payload.Span, scratch, running: true);
                continue;
            }

            if (type == MessageType.Complete)
            {
                return Complete.Decode(payload.Span);
            }

            throw FrameChannel.Unexpected(type, payload, "Pages or Complete");
        }
    }

    /// <summary>
    /// The bulk connections (Hello's N ≥ 2), once all have arrived: each gets a receiver thread
    /// of its own, which installs its pages. Returns, per connection, a task that completes when
    /// its ChannelSync has been received, that is, when everything it carried before the
    /// switchover is installed (its pages are striped so that a page's copies all cross the same
    /// connection: see <see cref="StripedSender"/>). A receiver that fails before the switchover,
    /// or after it while pages are still absent, aborts the main connection with its reason.
    /// </summary>
    private async Task<Task[]> StartBulkReceiversAsync(FrameChannel main, FrameChannel fault, PeerLiveness liveness, CancellationToken ct)
    {
        if (_hello.Channels < 2)
        {
            return [];
        }

        FrameChannel[] bulk = await _bulkChannels.WaitAsync(TimeSpan.FromMilliseconds(_hello.PeerTimeoutMs), ct).ConfigureAwait(false);
        if (bulk.Length != _hello.Channels)
        {
            throw new ProtocolException($"{bulk.Length} bulk connections where Hello announced {_hello.Channels}");
        }

        _bulk = bulk;
        SetCurrent([main, fault, .. bulk]);
        var synced = new Task[bulk.Length];
        var receivers = new Task[bulk.Length];
        for (int i = 0; i < bulk.Length; i++)
        {
            FrameChannel channel = bulk[i];
            channel.LimitKernelBuffers(0, StripedSender.KernelBufferBytes);
            liveness.Watch(channel);
            var sync = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            synced[i] = sync.Task;
            int index = i;
            receivers[i] = DedicatedThread.Start($"ferry-bulk-receiver-{i}", DedicatedThread.ReceiverNice, () => ReceiveBulk(channel, sync, ct));
            _ = receivers[i].ContinueWith(t =>
            {
                Exception e = t.Exception!.InnerException!;
                sync.TrySetException(e);
                if (!_bulkSwitched.IsSet || Volatile.Read(ref _absentRemaining) > 0)
                {
                    main.Abort($"bulk connection {index} lost: {e.Message}");
                }
            }, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
        }

        _bulkReceivers = Task.WhenAll(receivers).ContinueWith(_ => { }, TaskScheduler.Default);
        return synced;
    }

    /// <summary>
    /// One bulk connection (blocking, on its own thread): live and pause pages until its
    /// ChannelSync, then, once the switchover has marked the absent pages, pushed pages until the
    /// connection closes.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // a receiver's whole life: compiled optimized up front, never on stack replacement mid-move
    private void ReceiveBulk(FrameChannel channel, TaskCompletionSource synced, CancellationToken ct)
    {
        byte[] scratch = new byte[GuestMemory.PageSize];
        bool running = false;
        while (true)
        {
            (MessageType type, ReadOnlyMemory<byte> payload) = channel.Receive();
            if (type == MessageType.ChannelSync && !running)
            {
                if (!payload.IsEmpty)
                {
                    throw new ProtocolException("a ChannelSync with a payload");
                }

                synced.TrySetResult();
                _bulkSwitched.Wait(ct);
                running = true;
                continue;
            }

            if (type != MessageType.Pages)
            {
                throw FrameChannel.Unexpected(type, payload, running ? "Pages" : "Pages or ChannelSync");
            }

            if (!running && PageBatchReader.Header(payload.Span).Phase == PagePhase.Pause)
            {
                _vm.Machine.NetworkHold();
            }

            ReceivePages(payload.Span, scratch, running, bulkConnection: true);
        }
    }

    /// <summary>
    /// A broken fault path while pages are still absent ends the attempt (the hart would wait for
    /// ever): the main connection is aborted, so the migration pauses and waits for the source.
    /// </summary>
    private void StopIfPagesAreMissing(Task receiver, FrameChannel main)
    {
        if (receiver.IsFaulted && Volatile.Read(ref _absentRemaining) > 0)
        {
            main.Abort("fault connection lost: " + receiver.Exception!.InnerException!.Message);
        }
    }

    /// <summary>
    /// Fault replies and locality windows on the fault connection (blocking, on a thread of its
    /// own, from the start of the migration until the connection closes).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // a receiver's whole life: compiled optimized up front, never on stack replacement mid-move
    private void ReceiveFaultReplies(FrameChannel fault)
    {
        _faultThreadScheduling = DedicatedThread.Prioritize(DedicatedThread.CurrentThreadId);
        byte[] scratch = new byte[GuestMemory.PageSize];
        while (true)
        {
            (MessageType type, ReadOnlyMemory<byte> payload) = fault.Receive();
            if (Volatile.Read(ref _faultPathReady) == 0)
            {
                throw new ProtocolException("a fault reply before the switchover");
            }

            long at = Stopwatch.GetTimestamp();
            if (type != MessageType.Pages)
            {
                throw FrameChannel.Unexpected(type, payload, nameof(MessageType.Pages));
            }

            (PagePhase phase, uint faultPage) = PageBatchReader.Header(payload.Span);
            if (phase == PagePhase.FaultReply && faultPage != PageBatchWriter.NoFault)
            {
                _pager?.ReplyReceived((int)faultPage, at, PageBatchReader.Timing(payload.Span));
            }

            ReceivePages(payload.Span, scratch, running: true, faultConnection: true);
        }
    }

    private void ReceivePages(ReadOnlySpan<byte> payload, Span<byte> scratch, bool running, bool faultConnection = false, bool bulkConnection = false)
    {
        // After the resume the fault connection carries fault replies and windows (fault replies
        // that name no fault), the main connection the push and the rest of interrupted windows.
        (PagePhase phase, uint faultPage) = PageBatchReader.Header(payload);
        bool allowed = !running ? phase is PagePhase.Live or PagePhase.Pause
            : faultConnection ? phase == PagePhase.FaultReply
            : bulkConnection ? phase == PagePhase.Push
            : phase == PagePhase.Push || (phase == PagePhase.FaultReply && faultPage == PageBatchWriter.NoFault);
        if (!allowed)
        {
            throw new ProtocolException($"{phase} pages are not allowed {(running ? "after" : "before")} switchover on this connection");
        }

        var installer = new PageInstaller(this, phase, faultPage, running);
        PageBatchReader.Read(payload, Memory.PageCount, scratch, ref installer, running ? null : Memory);
    }

    /// <summary>Lands one received page (a struct visitor: nothing is allocated per batch).</summary>
    private readonly struct PageInstaller(DestinationMigration owner, PagePhase phase, uint faultPage, bool running) : IPageVisitor
    {
        public void Visit(int page, bool zero, ReadOnlySpan<byte> content) => owner.Land(page, zero, content, phase, faultPage, running);
    }

    private void Land(int page, bool zero, ReadOnlySpan<byte> content, PagePhase phase, uint faultPage, bool running)
    {
        // Before switchover pages land directly (the VM does not run); after, only absent pages are filled.
        if (running)
        {
            if (!Memory.InstallPage(page, zero ? [] : content))
            {
                return;
            }
        }
        else
        {
            Memory.LoadPage(page, zero ? [] : content);
        }

        _received.Record(page, zero ? 0 : PageHash.Of(page, content));
        Arrival kind = phase switch
        {
            PagePhase.Live => Arrival.Live,
            PagePhase.Pause => Arrival.Pause,
            PagePhase.Push => Arrival.Push,
            _ => (uint)page == faultPage ? Arrival.Fault : Arrival.Prefetch,
        };
        _arrival[page] = (byte)kind;
        Interlocked.Increment(ref _arrivals[(int)kind]);
        if (running && Interlocked.Decrement(ref _absentRemaining) == 0)
        {
            MarkResident();
        }
    }

    /// <summary>What the switchover runs at the destination, once, for nothing: decode and restore the fresh VM's own state.</summary>
    private void WarmUpSwitchover()
    {
        try
        {
            MachineState own = _vm.Machine.SaveState();
            _ = StateBundle.Decode(new StateBundle(StateCodec.Encode(own), null, 0, 0).Encode(), Memory.PageCount);
            _vm.Machine.RestoreState(StateCodec.Decode(StateCodec.Encode(own)));
            _ = new PageBitmap(Memory.PageCount).PopCount();
        }
        catch (Exception e) when (e is InvalidDataException or ProtocolException or InvalidOperationException)
        {
            // Only a warm-up: the real restore reports whatever is wrong.
        }
    }

    /// <summary>
    /// The guest's speed from the resume to the last absent page's arrival, from the instruction
    /// counts at both ends (the host samples its VMs every 50 ms, which a post-copy phase of
    /// 60 ms may not see twice); null where nothing was absent at the resume.
    /// </summary>
    private double? IpsWhileAbsent()
        => _resumeAt != 0 && _residentAt > _resumeAt
            ? (_instretAtResident - _instretAtResume) / ((double)(_residentAt - _resumeAt) / Stopwatch.Frequency)
            : null;

    private void MarkResident()
    {
        if (_guestAnnounceDeferred)
        {
            _guestAnnounceDeferred = false;
            Ferry.Machine.Board.VirtMachine machine = _vm.Machine;
            _ = machine.AtSafePointAsync(machine.AskGuestsToAnnounce).ContinueWith(t => _ = t.Exception, TaskScheduler.Default);
        }

        _instretAtResident = _vm.Machine.Hart.InstructionsRetired; // (the hart's thread writes it: an aligned 64-bit read)
        _residentAt = Stopwatch.GetTimestamp();
        _gcAtResident = GC.CollectionCount(0);
        _gcPauseAtResident = GC.GetTotalPauseDuration();
        _jitPostCopy = _resumeAt != 0 ? JitActivity.Since(_jitAtResume) : new JitActivity(0, 0); // (resident at the resume: an empty window)
        _resident.TrySetResult();
    }

    private async Task SampleAsync(CancellationToken ct)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(25));
        try
        {
            do
            {
                lock (_timeline)
                {
                    _timeline.Add(new TimelinePoint(Stopwatch.GetElapsedTime(_resumeAt).TotalMilliseconds, 0, NetworkFaults, _vm.Machine.Hart.InstructionsRetired));
                }
            }
            while (await timer.WaitForNextTickAsync(ct).ConfigureAwait(false));
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>What this thread allocated from the state's restore to the resume (bytes).</summary>
    private long _switchoverAllocated;

    private byte[] Metrics(double restoreMs, double? ipsAfter)
    {
        // Prefetch hits are read from the accessed bits once, at the first report (the
        // verification, before the VM is handed over): afterwards the host's working-set
        // estimator clears those bits every window, and the final report would count only the
        // touches of its last one.
        if (_prefetchHits is not { } counted)
        {
            long hits = 0, prefetched = 0;
            for (int p = 0; p < _arrival.Length; p++)
            {
                if (_arrival[p] == (byte)Arrival.Prefetch)
                {
                    prefetched++;
                    if (Memory.Accessed.Get(p))
                    {
                        hits++;
                    }
                }
            }

            counted = (prefetched, hits, _pager?.Prepage.ByDistance());
            _prefetchHits = counted;
        }

        (long prefetchedPages, long prefetchHits, PrefetchDistance[]? byDistance) = counted;

        List<TimelinePoint> timeline;
        lock (_timeline)
        {
            timeline = [.. _timeline];
        }

        double residentMs = _residentAt != 0 && _resumeAt != 0 ? Math.Max(0, (_residentAt - _resumeAt) * 1000.0 / Stopwatch.Frequency) : 0;
        var metrics = new DestinationMetrics
        {
            PagesLive = _arrivals[(int)Arrival.Live],
            PagesPause = _arrivals[(int)Arrival.Pause],
            PagesFault = _arrivals[(int)Arrival.Fault],
            PagesPrefetch = prefetchedPages,
            PagesPush = _arrivals[(int)Arrival.Push],
            Faults = _pager?.Faults ?? 0,
            Requests = _pager?.RequestsSent ?? 0,
            InFlightRequests = _pager?.InFlightRequests ?? 0,
            FaultThread = _pager is null ? null : _faultThreadScheduling,
            StallsMs = _pager?.Stalls() ?? [],
            FaultStages = _pager?.Stages.Summary(),
            GcCollections = _residentAt != 0 && _resumeAt != 0 ? _gcAtResident - _gcAtResume : 0,
            GcPauseMs = _residentAt != 0 && _resumeAt != 0 ? (_gcPauseAtResident - _gcPauseAtResume).TotalMilliseconds : 0,
            RuntimeSuspensions = _resumeAt != 0 ? RuntimeSuspensions.Process.Summarize(_resumeAt, Stopwatch.GetTimestamp()) : null,
            Jit = _jitPostCopy,
            PrefetchHits = prefetchHits,
            PrefetchByDistance = byDistance,
            RestoreMs = restoreMs,
            SwitchoverAllocatedBytes = _switchoverAllocated,
            TimeToFullyResidentMs = residentMs,
            IpsDuring = IpsWhileAbsent(),
            IpsAfter = ipsAfter,
            Timeline = timeline,
        };
        return JsonSerializer.SerializeToUtf8Bytes(metrics, MigrationReport.Json);
    }

    private (long Prefetched, long Hits, PrefetchDistance[]? ByDistance)? _prefetchHits;

    private enum Arrival : byte
    {
        None = 0,
        Live = 1,
        Pause = 2,
        Fault = 3,
        Prefetch = 4,
        Push = 5,
    }
}
