using System.Diagnostics;
using System.Text.Json;
using Ferry.Machine.Memory;
using Ferry.Machine.State;
using Ferry.Migration.Mechanisms;
using Ferry.Migration.Metrics;
using Ferry.Migration.Protocol;
using Ferry.Migration.Strategies;
using Ferry.Migration.Transport;

namespace Ferry.Migration;

/// <summary>
/// The source side of one migration: connects, runs the strategy's live phase, switches over,
/// serves faults and pushes the rest, and waits for the destination to verify memory before
/// letting the VM go. It never harms the VM: until the destination confirms it has resumed,
/// any failure or cancellation resumes the VM here; after that, a failure the destination
/// reports resumes it here from the switchover state (the destination has stopped its copy),
/// and a silent loss of the destination leaves it paused here for the operator (it may be
/// running there), so the VM never runs on both hosts at once.
/// </summary>
public sealed class SourceMigration
{
    private readonly IMigrationSource _vm;
    private readonly MigrationOptions _options;
    private readonly Func<ConnectionRole, CancellationToken, Task<Stream>> _connect;
    private readonly byte[] _token;
    private readonly CancellationTokenSource _cancel = new();
    private volatile bool _pastPointOfNoReturn;

    public SourceMigration(IMigrationSource vm, MigrationOptions options, byte[] token,
        Func<ConnectionRole, CancellationToken, Task<Stream>> connect, string id, string? destination = null)
    {
        options.Validate();
        _ = RuntimeSuspensions.Process;
        _vm = vm;
        _options = options;
        _token = token;
        _connect = connect;
        Id = id;
        Destination = destination;
    }

    public string Id { get; }

    public string? Destination { get; }

    /// <summary>The destination's data endpoint (host:port), recorded in the page file for a restarted agent; defaults to <see cref="Destination"/>.</summary>
    public string? DataEndpoint { get; init; }

    public MigrationProgress Progress { get; } = new();

    /// <summary>The switchover state may have left: from here the VM may run at the destination, and never again here unless it says it did not.</summary>
    public bool PastPointOfNoReturn => _pastPointOfNoReturn;

    /// <summary>Asks the migration to stop. Honoured until the switchover state is sent; returns false after.</summary>
    public bool Cancel()
    {
        if (_pastPointOfNoReturn)
        {
            return false;
        }

        _cancel.Cancel();
        return true;
    }

    private TaskCompletionSource _resumeRequested = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>
    /// Asks a migration that lost its destination after the switchover to reconnect now
    /// (`ferry migrate --resume`): false unless it is recovering.
    /// </summary>
    public bool Resume()
    {
        if (Progress.Phase != SourcePhase.Recovering)
        {
            return false;
        }

        Volatile.Read(ref _resumeRequested).TrySetResult();
        return true;
    }

    private Task ResumeRequested => Volatile.Read(ref _resumeRequested).Task;

    private void ConsumeResumeRequest()
    {
        if (_resumeRequested.Task.IsCompleted)
        {
            Volatile.Write(ref _resumeRequested, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
        }
    }

    public Task<MigrationReport> RunAsync(CancellationToken cancellation) => RunAsync((run, ct) => run.ExecuteAsync(ct), cancellation);

    /// <summary>
    /// A restarted source agent serves a migration from its page file (the process that ran it
    /// died after the switchover): reconnects to the destination, learns which pages it still
    /// lacks, sends them from the file, and completes with the memory digest of the pause. This
    /// migration's VM must be the file's <see cref="PageFileSource"/>.
    /// </summary>
    public Task<MigrationReport> ResumeFromPageFileAsync(PageFile file, CancellationToken cancellation)
        => RunAsync((run, ct) => run.ExecuteFromPageFileAsync(file, ct), cancellation);

    private async Task<MigrationReport> RunAsync(Func<Run, CancellationToken, Task> execute, CancellationToken cancellation)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellation, _cancel.Token);
        CancellationToken ct = linked.Token;
        var run = new Run(this);
        try
        {
            await execute(run, ct).ConfigureAwait(false);
            return run.Report(MigrationOutcome.Completed, null, VmLocation.Destination);
        }
        catch (Exception e) when (e is OperationCanceledException && _cancel.IsCancellationRequested && !run.StateSent)
        {
            await run.AbandonAsync(MessageType.Cancel, "cancelled by the operator").ConfigureAwait(false);
            Progress.Phase = SourcePhase.Cancelled;
            return run.Report(MigrationOutcome.Cancelled, "cancelled before switchover; the VM keeps running at the source", VmLocation.Source);
        }
        catch (Exception e)
        {
            string reason = Describe(e);
            Progress.Phase = SourcePhase.Failed;
            Progress.Detail = reason;
            if (!run.StateSent)
            {
                await run.AbandonAsync(MessageType.Failed, reason).ConfigureAwait(false);
                return run.Report(MigrationOutcome.Failed, reason, VmLocation.Source);
            }

            if (run.DestinationStopped)
            {
                // The destination refused or stopped its copy: the switchover state here is the VM.
                _vm.ResumeHere();
                await run.CloseQuietlyAsync().ConfigureAwait(false);
                return run.Report(MigrationOutcome.Failed, reason + "; the VM resumed at the source from the switchover state", VmLocation.Source);
            }

            await run.CloseQuietlyAsync().ConfigureAwait(false);
            return run.Report(MigrationOutcome.Failed, reason + "; the destination's state is unknown, so the VM stays paused at the source (resume it there only if it does not run at the destination)", VmLocation.SourcePaused);
        }
        finally
        {
            run.StopSampling();
            run.LeaveGcQuiet();

            // Auto-converge never outlives its migration: a VM that stays here runs at full speed.
            // (The pause lifted it already when the migration got that far, so a VM that left is not touched.)
            if (_vm.Machine.Throttle != 0)
            {
                _vm.Machine.Throttle = 0;
            }
        }
    }

    private static string Describe(Exception e) => e switch
    {
        ProtocolException or MigrationPeerException => e.Message,
        System.Net.Sockets.SocketException s => $"destination unreachable: {s.Message}",
        IOException io => $"connection lost: {io.Message}",
        OperationCanceledException => "timed out or cancelled",
        _ => $"{e.GetType().Name}: {e.Message}",
    };

    /// <summary>One execution: the state of a migration in flight.</summary>
    private sealed class Run(SourceMigration owner)
    {
        /// <summary>The strategy: what is sent live and in the pause, and the knobs that depend on it.</summary>
        private readonly StrategyPolicy _policy = StrategyPolicy.For(owner._options.Strategy);
        private readonly long _start = Stopwatch.GetTimestamp();
        private readonly JitMark _jitAtStart = JitActivity.Mark();
        private JitActivity? _jit;
        private readonly DateTimeOffset _startedAt = DateTimeOffset.UtcNow;
        private readonly List<TimelinePoint> _timeline = [];
        private readonly CancellationTokenSource _sampling = new();
        private FrameChannel? _main;
        private FrameChannel? _fault;
        private FrameChannel?[] _bulk = []; // --channels N ≥ 2: the bulk connections (closed for good by a lost link)
        private StripedSender? _striped;
        private SourceContext? _context;
        private SourceBooks? _books;
        private FaultServer? _faultServer;
        private PeerLiveness? _liveness;
        private PushQueue? _queue;
        private PageBitmap? _queueFrom;
        private Task<(MessageType Type, byte[] Payload)>? _mainReceive;
        private IDisposable? _gcQuiet;
        private PageFile? _pageFile;
        private PageFileReport? _pageFileReport;
        private double _pageFileLiveMs;

        private PageFile NewPageFile() => new()
        {
            Token = owner._token,
            Destination = owner.DataEndpoint ?? owner.Destination ?? "",
            VmName = Vm.Name,
            MigrationId = owner.Id,
            Machine = Vm.Machine.Config,
            Strategy = Options.Strategy,
            StopAt = Vm.StopAt,
            PeerTimeoutMs = (uint)Options.PeerTimeout.TotalMilliseconds,
        };

        /// <summary>The page file of this migration, if one was written (kept while its pages may still be owed).</summary>
        public PageFile? PageFile => _pageFile;
        private readonly List<Interruption> _interruptions = [];
        private Switchover? _switchover;
        private bool _pausedFromFile;
        private long _setupEnd, _resumeAt, _end;
        private long _resumedReceivedAt;
        private double _handshakeRttMs;
        private double _destinationSwitchMs;
        private string? _downtimeMethod;
        private DestinationMetrics? _destination;

        public bool StateSent { get; private set; }

        public bool DestinationStopped { get; private set; }

        /// <summary>Ends the pause's no-GC window if a failure left it open (idempotent).</summary>
        public void LeaveGcQuiet() => _gcQuiet?.Dispose();

        private IMigrationSource Vm => owner._vm;

        private MigrationOptions Options => owner._options;

        public async Task ExecuteAsync(CancellationToken ct)
        {
            GuestMemory memory = Vm.Machine.Memory;
            var shaper = new LinkShaper(Options.BandwidthBitsPerSecond);
            StrategyPolicy policy = _policy;
            owner.Progress.Phase = SourcePhase.Connecting;

            // Handshake: main connection, then the fault connection. Nothing touches the VM yet.
            // Both are watched from the start: a destination silent past the deadline aborts them.
            _main = new FrameChannel(await ConnectAsync(ConnectionRole.Main, ct).ConfigureAwait(false), shaper);
            _liveness = new PeerLiveness(Options.PeerTimeout, "destination");
            _liveness.Watch(_main);
            await HelloAsync(_main, ConnectionRole.Main, ct).ConfigureAwait(false);
            _fault = new FrameChannel(await ConnectAsync(ConnectionRole.Fault, ct).ConfigureAwait(false), shaper, urgent: true);
            _liveness.Watch(_fault);
            await HelloAsync(_fault, ConnectionRole.Fault, ct).ConfigureAwait(false);
            FrameChannel[] bulk = await ConnectBulkAsync(shaper, ct).ConfigureAwait(false);
            _setupEnd = Stopwatch.GetTimestamp();

            // The destination's next frame on the main connection (Resumed, or a Failed), received
            // from now on: a receive in progress is what consumes its heartbeats, so its silence is
            // measured even while the live phase only sends.
            _mainReceive = _main.ReceiveCopyAsync(CancellationToken.None);
            _ = _mainReceive.ContinueWith(t => t.Exception, TaskScheduler.Default);

            _books = new SourceBooks(memory.PageCount);
            var sender = new PageSender(_main, memory, _books, Options.BatchPages, Options.Compress,
                Options.DeltaCacheBytes > 0 ? new SentPageCache(Options.DeltaCacheBytes) : null);
            _faultServer = new FaultServer(_fault, memory, _books, Options.Compress);
            if (bulk.Length > 0)
            {
                _striped = new StripedSender(bulk, memory, _books, Options.BatchPages, Options.Compress, Options.DeltaCacheBytes);
            }

            // The fault path is ready before anything touches the VM: its thread and the
            // connection's blocking mode cost nothing in the pause. It serves requests only after
            // the switchover (Start); until then the destination has nothing to fault on.
            _fault.EnterKernelBlockingMode();
            using var faultStop = CancellationTokenSource.CreateLinkedTokenSource(ct);
            Task faultTask = WatchFaultServer(_faultServer.RunAsync(faultStop.Token));
            WorkingSetEstimator estimator = Vm.WorkingSet ?? new WorkingSetEstimator(Vm.Machine, TimeSpan.FromMilliseconds(100));
            _context = new SourceContext(Vm, Options, policy, (IPageStream?)_striped ?? sender, _books, shaper, owner.Progress, estimator, _start);
            _ = SampleAsync(_sampling.Token);

            // The switchover's code runs once now, while the VM runs, so that the pause does not
            // pay for its first compilation (2-5 ms of a first move's pause on this machine).
            await Vm.Machine.AtSafePointAsync(() => Switchover.WarmUp(Vm.Machine)).ConfigureAwait(false);

            // Live phase: dirty logging starts now (the first collection discards what came before).
            owner.Progress.Phase = SourcePhase.LiveCopy;
            await _context.CollectDirtyAsync().ConfigureAwait(false);
            if (Vm.WorkingSet is null && policy.UsesWorkingSet)
            {
                await SampleWorkingSetAsync(estimator, ct).ConfigureAwait(false);
            }

            await policy.RunLiveAsync(_context, ct).ConfigureAwait(false);
            if (Options.PageFileDirectory is string directory && policy.ResumesBeforeAllPages)
            {
                // The durable page file, while the VM still runs: every page not yet delivered, as
                // it is now, on disk before the pause; the pause adds only what the VM dirties meanwhile.
                long writeStart = Stopwatch.GetTimestamp();
                await _context.CollectDirtyAsync().ConfigureAwait(false); // from here the dirty log says what the file misses
                _pageFile = NewPageFile();
                _pageFile.Open(directory, memory.PageCount);
                _pageFile.Append(memory, _context.Undelivered());
                _pageFile.Sync();
                _pageFileLiveMs = Stopwatch.GetElapsedTime(writeStart).TotalMilliseconds;
            }

            // Switchover: pause, last dirty pages, the strategy's pause pages, CPU and devices.
            owner.Progress.Phase = SourcePhase.Switchover;
            var switchover = new Switchover(_context, estimator, _faultServer);
            _switchover = switchover;
            _gcQuiet = GcQuiet.Enter(); // (while the VM still runs: starting the region may collect first)
            await switchover.PauseAsync(_pageFile, _pageFileLiveMs, ct).ConfigureAwait(false);
            _pageFileReport = switchover.PageFileReport;
            owner._pastPointOfNoReturn = true;
            if (owner._cancel.IsCancellationRequested)
            {
                throw new OperationCanceledException();
            }

            // From here on the VM belongs to the destination unless it says otherwise.
            StateSent = true;
            _queue = switchover.Queue;
            _queueFrom = switchover.Remaining;
            Exception? lost = null;
            try
            {
                Resumed resumed = await switchover.HandOverAsync(_main, () => ExpectFromDestinationAsync(MessageType.Resumed, CancellationToken.None)).ConfigureAwait(false);
                _resumedReceivedAt = switchover.ResumedReceivedAt;
                _destinationSwitchMs = resumed.SwitchoverMs;
                (_resumeAt, _downtimeMethod) = switchover.ResumeTime(resumed, shaper, _handshakeRttMs);
            }
            catch (Exception e) when (!DestinationStopped && LinkFailure.Is(e))
            {
                lost = e; // the destination may or may not have resumed: it says so when it is reached again
            }

            _gcQuiet.Dispose(); // the pause is over

            // Post-copy phase: the destination runs; push what it still lacks, while faults are
            // served. A lost or silent destination pauses the migration here (the VM stays paused,
            // its memory and this record kept) until a reconnection tells what is still absent.
            Task<(ulong Digest, uint Pages)> digest = switchover.DigestAtPause ?? DedicatedThread.Start("ferry-digest", DedicatedThread.BackgroundNice, () => PageHash.OfMemory(memory));
            bool first = true;
            bool completedThere = false;
            while (true)
            {
                if (lost is not null)
                {
                    Task? recovered = await RecoverAsync(lost, faultTask, ct).ConfigureAwait(false);
                    if (recovered is null)
                    {
                        completedThere = true;
                        break;
                    }

                    faultTask = recovered;
                    lost = null;
                    first = false;
                }

                try
                {
                    await PostCopyAsync(estimator, sender, digest, first).ConfigureAwait(false);
                    break;
                }
                catch (Exception e) when (!DestinationStopped && LinkFailure.Is(e))
                {
                    lost = e;
                }
            }

            Ended();

            // The destination's last word: the guest's speed after the migration (best effort;
            // none when the destination had completed before a reconnection).
            if (!completedThere)
            {
                try
                {
                    ReadOnlyMemory<byte> report = await _main!.ExpectAsync(MessageType.Report, CancellationToken.None)
                        .AsTask().WaitAsync(TimeSpan.FromSeconds(3), CancellationToken.None).ConfigureAwait(false);
                    _destination = ParseMetrics(report.ToArray()) ?? _destination;
                }
                catch (Exception e) when (e is TimeoutException or ProtocolException or IOException)
                {
                }
            }

            faultStop.Cancel();
            await CloseAsync().ConfigureAwait(false); // ends the fault server's threads, blocked on the connection
            await faultTask.ContinueWith(_ => { }, TaskScheduler.Default).WaitAsync(TimeSpan.FromSeconds(5), CancellationToken.None)
                .ContinueWith(_ => { }, TaskScheduler.Default).ConfigureAwait(false);
        }

        public async Task ExecuteFromPageFileAsync(PageFile file, CancellationToken ct)
        {
            GuestMemory memory = Vm.Machine.Memory;
            _books = new SourceBooks(memory.PageCount);
            _pageFile = file;
            _pausedFromFile = true;
            StateSent = true;
            _ = SampleAsync(_sampling.Token);
            Task? faultTask = await RecoverAsync(new IOException("the source agent restarted"), Task.CompletedTask, ct).ConfigureAwait(false);
            Task<(ulong Digest, uint Pages)> digest = Task.FromResult((file.MemoryDigest, file.NonZeroPages));
            while (faultTask is not null) // (null: the destination had completed the migration)
            {
                try
                {
                    await PostCopyAsync(null, null, digest, first: false).ConfigureAwait(false);
                    break;
                }
                catch (Exception e) when (!DestinationStopped && LinkFailure.Is(e))
                {
                    faultTask = await RecoverAsync(e, faultTask, ct).ConfigureAwait(false);
                }
            }

            faultTask ??= Task.CompletedTask;

            Ended();
            await CloseAsync().ConfigureAwait(false);
            await faultTask.ContinueWith(_ => { }, TaskScheduler.Default).WaitAsync(TimeSpan.FromSeconds(5), CancellationToken.None)
                .ContinueWith(_ => { }, TaskScheduler.Default).ConfigureAwait(false);
        }

        /// <summary>One attempt at the post-copy phase on the current connections: push, Complete, verdict.</summary>
        private async Task PostCopyAsync(WorkingSetEstimator? estimator, PageSender? sender, Task<(ulong Digest, uint Pages)> digest, bool first)
        {
            var phase = new PostCopyPhase(Vm.Machine.Memory, _books!, Options.Compress, owner.Progress);
            PageBitmap? recencyFrom = _queueFrom;
            _queueFrom = null; // once per queue
            (MessageType type, byte[] payload) = await phase.RunAsync(_main!, _queue!, recencyFrom, estimator, first ? sender : null, digest, _striped).ConfigureAwait(false);
            if (type != MessageType.Verified)
            {
                DestinationStopped = true;
                throw FrameChannel.Unexpected(type, payload, nameof(MessageType.Verified));
            }

            Verified verified = Verified.Decode(payload);
            _destination = ParseMetrics(verified.MetricsJson);
            if (!verified.Ok)
            {
                DestinationStopped = true;
                throw new MigrationPeerException("destination memory verification failed: " + verified.Message);
            }
        }

        /// <summary>
        /// The destination was lost after the state was sent: the VM stays paused here. Reconnects
        /// (automatically every half deadline for <see cref="MigrationOptions.ReconnectWindow"/>, then
        /// when <see cref="SourceMigration.Resume"/> is called), learns from the destination which
        /// pages it still lacks, and rebuilds the push and the fault path on the new connections.
        /// Returns the new fault server's task, or null if the destination has completed the
        /// migration (it verified every page; the Verified frame was lost with the link). A
        /// destination that never resumed the VM (or stopped its copy) gives it back: that throws
        /// with <see cref="DestinationStopped"/> set.
        /// </summary>
        private async Task<Task?> RecoverAsync(Exception cause, Task oldFaultTask, CancellationToken ct)
        {
            MigrationProgress progress = owner.Progress;
            progress.Phase = SourcePhase.Recovering;
            long lostAt = Stopwatch.GetTimestamp();
            string reason = cause is PeerTimeoutException ? cause.Message : "connection to the destination lost: " + cause.Message;
            var interruption = new Interruption(Ms(lostAt), reason, _liveness?.DetectedAfterMs ?? 0);
            lock (_interruptions)
            {
                _interruptions.Add(interruption);
            }

            progress.Detail = reason + "; the VM is paused here until the destination is reached again";
            _liveness?.Dispose();
            await CloseAsync().ConfigureAwait(false);
            await oldFaultTask.ContinueWith(_ => { }, TaskScheduler.Default).WaitAsync(TimeSpan.FromSeconds(10), CancellationToken.None)
                .ContinueWith(_ => { }, TaskScheduler.Default).ConfigureAwait(false);

            TimeSpan retry = TimeSpan.FromTicks(Math.Clamp(Options.PeerTimeout.Ticks / 2, TimeSpan.FromMilliseconds(50).Ticks, TimeSpan.FromSeconds(2).Ticks));
            int attempts = 0;
            string paused = reason + "; the VM is paused here";
            while (true)
            {
                bool automatic = Stopwatch.GetElapsedTime(lostAt) < Options.ReconnectWindow;
                if (!automatic)
                {
                    // (the last automatic attempt may have failed just before the window's end, and said "retrying")
                    progress.Detail = paused + ", waiting for `ferry migrate --resume`";
                }

                if (attempts > 0 || !automatic)
                {
                    // Wait for the next automatic attempt, or (after the window) for the operator.
                    Task manual = owner.ResumeRequested;
                    await (automatic ? Task.WhenAny(manual, Task.Delay(retry, ct)) : manual.WaitAsync(ct)).ConfigureAwait(false);
                    ct.ThrowIfCancellationRequested();
                    owner.ConsumeResumeRequest();
                }

                attempts++;
                try
                {
                    ResumeState state = await ReconnectAsync(ct).ConfigureAwait(false);
                    if (state.Status == ResumeStatus.NotResumed)
                    {
                        DestinationStopped = true;
                        throw new MigrationPeerException("the destination did not run the VM (it never resumed it, or stopped its copy)");
                    }

                    if (state.Status == ResumeStatus.Completed)
                    {
                        // The destination verified every page before the link failed (its Verified
                        // was lost with it): the migration is complete; nothing is left to send.
                        Recovered(0);
                        return null;
                    }

                    var absent = new PageBitmap(Vm.Machine.Memory.PageCount);
                    state.AbsentPages!.CopyTo(absent.Words);
                    if (_pageFile?.Pages is PageBitmap held && Vm is PageFileSource && !IsSubset(absent, held))
                    {
                        // Never send a page this process does not have: the destination would install zeros.
                        DestinationStopped = false;
                        throw new InvalidOperationException("the destination lacks pages that the page file does not hold: it cannot be served from here");
                    }
                    _queue = new PushQueue(absent, _policy.PushOrderFor(Options), Options.FaultNeighbourhoodPages);
                    _queueFrom = absent;
                    _faultServer = new FaultServer(_fault!, Vm.Machine.Memory, _books!, Options.Compress);
                    _fault!.EnterKernelBlockingMode();
                    _faultServer.Start(_queue);
                    Task faultTask = WatchFaultServer(_faultServer.RunAsync(CancellationToken.None));
                    Recovered(absent.PopCount());
                    return faultTask;
                }
                catch (Exception e) when (!ct.IsCancellationRequested && !DestinationStopped && (LinkFailure.Is(e) || e is TimeoutException or MigrationPeerException))
                {
                    paused = $"{reason}; reconnection attempt {attempts} failed ({e.Message}); the VM is paused here";
                    progress.Detail = paused + (Stopwatch.GetElapsedTime(lostAt) < Options.ReconnectWindow ? ", retrying" : ", waiting for `ferry migrate --resume`");
                    _liveness?.Dispose();
                    await CloseAsync().ConfigureAwait(false);
                }
            }

            void Recovered(int pagesResent)
            {
                if (_resumeAt == 0)
                {
                    // Resumed was lost with the link: the VM resumed there some time before this.
                    _resumedReceivedAt = Stopwatch.GetTimestamp();
                    _resumeAt = _resumedReceivedAt;
                    _downtimeMethod = "recovered";
                }

                interruption.RecoveredAfterMs = Stopwatch.GetElapsedTime(lostAt).TotalMilliseconds;
                interruption.PagesResent = pagesResent;
                interruption.Attempts = attempts;
                progress.Recoveries++;
                progress.Detail = null;
            }
        }

        private static bool IsSubset(PageBitmap a, PageBitmap b)
        {
            ReadOnlySpan<ulong> x = a.Words, y = b.Words;
            for (int i = 0; i < x.Length; i++)
            {
                if ((x[i] & ~y[i]) != 0)
                {
                    return false;
                }
            }

            return true;
        }

        /// <summary>New main and fault connections that resume this migration (Hello with the Resume flag); the destination's ResumeState.</summary>
        private async Task<ResumeState> ReconnectAsync(CancellationToken ct)
        {
            var shaper = new LinkShaper(Options.BandwidthBitsPerSecond);
            _main = new FrameChannel(await ConnectAsync(ConnectionRole.Main, ct).ConfigureAwait(false), shaper);
            _liveness = new PeerLiveness(Options.PeerTimeout, "destination");
            _liveness.Watch(_main);
            await HelloAsync(_main, ConnectionRole.Main, ct, resume: true).ConfigureAwait(false);
            ReadOnlyMemory<byte> payload = await _main.ExpectAsync(MessageType.ResumeState, ct).AsTask().WaitAsync(Options.PeerTimeout, ct).ConfigureAwait(false);
            ResumeState state = ResumeState.Decode(payload.Span, Vm.Machine.Memory.PageCount);
            if (state.Status == ResumeStatus.RunningHere)
            {
                _fault = new FrameChannel(await ConnectAsync(ConnectionRole.Fault, ct).ConfigureAwait(false), shaper, urgent: true);
                _liveness.Watch(_fault);
                await HelloAsync(_fault, ConnectionRole.Fault, ct, resume: true).ConfigureAwait(false);
            }

            return state;
        }

        private async Task<Stream> ConnectAsync(ConnectionRole role, CancellationToken ct)
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(Options.PeerTimeout);
            try
            {
                return await owner._connect(role, timeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                throw new TimeoutException($"no connection to the destination within {Options.PeerTimeout.TotalSeconds:0.0} s");
            }
        }

        /// <summary>A fault connection that breaks while pages are still owed ends the attempt: the main connection is aborted too.</summary>
        private Task WatchFaultServer(Task faultTask)
        {
            FrameChannel? main = _main;
            _ = faultTask.ContinueWith(t =>
            {
                if (t.IsFaulted && StateSent && owner.Progress.Phase is SourcePhase.PostCopy or SourcePhase.Verifying)
                {
                    main?.Abort("fault connection lost: " + t.Exception!.InnerException!.Message);
                }
            }, TaskScheduler.Default);
            return faultTask;
        }

        /// <summary>The bulk connections (<c>--channels N</c>, N ≥ 2), each greeted with its index; none for one channel.</summary>
        private async Task<FrameChannel[]> ConnectBulkAsync(LinkShaper shaper, CancellationToken ct)
        {
            if (Options.Channels < 2)
            {
                return [];
            }

            _bulk = new FrameChannel?[Options.Channels];
            for (int i = 0; i < _bulk.Length; i++)
            {
                var channel = new FrameChannel(await ConnectAsync(ConnectionRole.Bulk, ct).ConfigureAwait(false), shaper);
                _bulk[i] = channel;
                channel.LimitKernelBuffers(StripedSender.KernelBufferBytes, 0);
                _liveness!.Watch(channel);
                await HelloAsync(channel, ConnectionRole.Bulk, ct, index: (byte)i).ConfigureAwait(false);
            }

            return [.. _bulk!];
        }

        private async Task HelloAsync(FrameChannel channel, ConnectionRole role, CancellationToken ct, bool resume = false, byte index = 0)
        {
            var hello = new Hello
            {
                Role = role,
                Token = owner._token,
                VmName = Vm.Name,
                Machine = Vm.Machine.Config,
                Strategy = Options.Strategy,
                StopAt = Vm.StopAt,
                LocalityPages = (ushort)_policy.Locality(Options),
                LocalityAdaptive = _policy.LocalityAdaptive(Options),
                PeerTimeoutMs = (uint)Options.PeerTimeout.TotalMilliseconds,
                Resume = resume,
                Channels = resume ? (byte)1 : (byte)Options.Channels,
                ChannelIndex = index,
            };
            long sent = Stopwatch.GetTimestamp();
            await channel.SendAsync(MessageType.Hello, hello.Encode(), ct).ConfigureAwait(false);
            ReadOnlyMemory<byte> reply = await channel.ExpectAsync(MessageType.Welcome, ct).AsTask()
                .WaitAsync(Options.PeerTimeout, ct).ConfigureAwait(false);
            double rtt = Stopwatch.GetElapsedTime(sent).TotalMilliseconds;
            _handshakeRttMs = _handshakeRttMs == 0 ? rtt : Math.Min(_handshakeRttMs, rtt);
            HelloReply welcome = HelloReply.Decode(reply.Span);
            if (!welcome.Accepted)
            {
                throw new MigrationPeerException("refused: " + welcome.Message);
            }
        }

        private async Task<ReadOnlyMemory<byte>> ExpectFromDestinationAsync(MessageType expected, CancellationToken ct)
        {
            (MessageType type, byte[] payload) = await _mainReceive!.WaitAsync(TimeSpan.FromSeconds(60), ct).ConfigureAwait(false);
            if (type == expected)
            {
                return payload;
            }

            // A destination that refuses the switchover has not resumed the VM.
            DestinationStopped = type is MessageType.Failed or MessageType.Refused;
            throw FrameChannel.Unexpected(type, payload, expected.ToString());
        }

        private async Task SampleWorkingSetAsync(WorkingSetEstimator estimator, CancellationToken ct)
        {
            for (int i = 0; i < Options.WorkingSetWindows; i++)
            {
                await Task.Delay(estimator.Window, ct).ConfigureAwait(false);
                await Vm.Machine.AtSafePointAsync(estimator.CloseWindow).ConfigureAwait(false);
            }
        }

        /// <summary>Tells the destination (best effort) and resumes the VM here if it was paused.</summary>
        public async Task AbandonAsync(MessageType type, string reason)
        {
            try
            {
                if (_main is not null)
                {
                    await _main.SendAsync(type, ReasonMessage.Encode(reason), CancellationToken.None).AsTask()
                        .WaitAsync(TimeSpan.FromSeconds(2)).ConfigureAwait(false);
                }
            }
            catch (Exception)
            {
                // Best effort: whatever became of the connection (aborted as silent, reset, closed),
                // the VM resumes here.
            }

            if (_pausedFromFile || _switchover is { Paused: true })
            {
                Vm.ResumeHere();
            }

            await CloseQuietlyAsync().ConfigureAwait(false);
        }

        /// <summary>
        /// <see cref="CloseAsync"/> on a path that is already failing: a failure to close must not
        /// cost the migration its report (the report says where the VM is).
        /// </summary>
        public async Task CloseQuietlyAsync()
        {
            try
            {
                await CloseAsync().ConfigureAwait(false);
            }
            catch (Exception)
            {
                // Best effort: the connections are being dropped anyway.
            }
        }

        public async Task CloseAsync()
        {
            _liveness?.Dispose();
            _striped?.Dispose();
            _striped = null; // a reconnected migration pushes on its main connection
            FrameChannel?[] bulk = _bulk;
            _bulk = [];
            foreach (FrameChannel? c in new[] { _main, _fault }.Concat(bulk))
            {
                if (c is not null)
                {
                    try
                    {
                        await c.DisposeAsync().ConfigureAwait(false);
                    }
                    catch (Exception e) when (e is IOException or ObjectDisposedException)
                    {
                    }
                }
            }
        }

        public void StopSampling() => _sampling.Cancel();

        /// <summary>The move is over (completed): its end time, the JIT's work during it, the phase, no more samples.</summary>
        private void Ended()
        {
            _end = Stopwatch.GetTimestamp();
            _jit = JitActivity.Since(_jitAtStart);
            owner.Progress.Phase = SourcePhase.Completed;
            StopSampling();
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
                        _timeline.Add(new TimelinePoint(Ms(Stopwatch.GetTimestamp()), _books?.Counters.TotalPageBytes ?? 0,
                            _faultServer?.Requests ?? 0, Vm.Machine.Hart.InstructionsRetired));
                    }

                    MigrationProgress p = owner.Progress;
                    long sent = _books?.Counters.TotalPageBytes ?? 0;
                    double elapsed = Ms(Stopwatch.GetTimestamp());
                    p.RateBitsPerSecond = elapsed > 0 ? sent * 8 / (elapsed / 1000) : 0;
                    Interlocked.Exchange(ref p.BytesSent, sent);
                    Interlocked.Exchange(ref p.FaultRequests, _faultServer?.Requests ?? 0);
                    p.ElapsedMs = elapsed;
                    PeerLiveness? liveness = _liveness;
                    p.PeerSilentMs = liveness is { Stalled: true } ? liveness.Silence.TotalMilliseconds : 0;
                    if (_context is not null)
                    {
                        long total = Vm.Machine.Memory.Populated.PopCount();
                        Interlocked.Exchange(ref p.PagesTotal, total);
                        Interlocked.Exchange(ref p.PagesRemaining, Math.Max(0, total - _context.Delivered.PopCount() - (_books?.Counters.Pages(PagePhase.Push) ?? 0) - (_books?.Counters.Pages(PagePhase.FaultReply) ?? 0)));
                    }
                }
                while (await timer.WaitForNextTickAsync(ct).ConfigureAwait(false));
            }
            catch (OperationCanceledException)
            {
            }
        }

        private double Ms(long ticks) => ticks == 0 ? 0 : (ticks - _start) * 1000.0 / Stopwatch.Frequency;

        private static DestinationMetrics? ParseMetrics(byte[] json)
        {
            try
            {
                return json.Length == 0 ? null : JsonSerializer.Deserialize<DestinationMetrics>(json, MigrationReport.Json);
            }
            catch (JsonException)
            {
                return null;
            }
        }

        public MigrationReport Report(MigrationOutcome outcome, string? error, VmLocation location)
        {
            if (location != VmLocation.SourcePaused)
            {
                // Its pages are no longer owed: the destination has them all, or the VM is here.
                _pageFile?.Delete();
            }

            long end = _end != 0 ? _end : Stopwatch.GetTimestamp();
            TransferCounters c = _books?.Counters ?? new TransferCounters();
            DestinationMetrics d = _destination ?? new DestinationMetrics();
            double[] stalls = [.. d.StallsMs.Order()];
            double resumeMs = Ms(_resumeAt);
            var points = new List<TimelinePoint>();
            lock (_timeline)
            {
                // Source samples until the pause; after the resume, the destination's guest progress.
                points.AddRange(_timeline.Where(p => _resumeAt == 0 || p.Ms <= resumeMs)
                    .Select(p => p with { Faults = 0 }));
                if (_resumeAt != 0)
                {
                    foreach (TimelinePoint dp in d.Timeline)
                    {
                        double ms = resumeMs + dp.Ms;
                        points.Add(new TimelinePoint(ms, TimelineReport.BytesAt(_timeline, ms), dp.Faults, dp.Instructions));
                    }
                }
            }

            double total = Ms(end);
            long bytesOnWire = c.TotalPageBytes + c.ControlBytes;
            double? ipsBefore = Vm.Rate.Rate(_start - (Stopwatch.Frequency * 2), _start);
            long pauseAt = _switchover?.PauseAt ?? 0;
            double? ipsDuringSource = pauseAt != 0 ? Vm.Rate.Rate(_start, pauseAt) : null;
            double? ipsDuring = CombineDuring(ipsDuringSource, Ms(pauseAt) - Ms(_setupEnd), d.IpsDuring, d.TimeToFullyResidentMs);
            MigrationOptions o = Options;
            long prefetched = d.PagesPrefetch;
            return new MigrationReport
            {
                Id = owner.Id,
                Vm = Vm.Name,
                Strategy = o.Strategy,
                Destination = owner.Destination,
                Outcome = outcome,
                Error = error,
                VmLocation = location,
                Options = new OptionsReport(o.BandwidthBitsPerSecond, o.DowntimeLimit.TotalMilliseconds, o.MaxRounds, o.MaxLiveTime.TotalMilliseconds,
                    _policy.Locality(o), _policy.LocalityAdaptive(o), o.WorkingSetWindows, o.WorkingSetMinHits, (Vm.WorkingSet?.Window ?? TimeSpan.FromMilliseconds(100)).TotalMilliseconds,
                    _policy.WorkingSetCap(o), o.WorkingSetPresend, _policy.LivePasses(o), _policy.PushOrderFor(o).ToString(), o.FaultNeighbourhoodPages, o.Compress, o.BatchPages) { Channels = o.Channels },
                StartedAt = _startedAt,
                TotalTimeMs = total,
                SetupTimeMs = Ms(_setupEnd),
                LiveTimeMs = pauseAt != 0 ? Ms(pauseAt) - Ms(_setupEnd) : 0,
                DowntimeMs = _resumeAt != 0 ? Ms(_resumeAt) - Ms(pauseAt) : 0,
                DowntimeObservedMs = _resumedReceivedAt != 0 ? Ms(_resumedReceivedAt) - Ms(pauseAt) : 0,
                DowntimeMethod = _downtimeMethod,
                PostCopyTimeMs = _resumeAt != 0 && _end != 0 ? Ms(_end) - Ms(_resumeAt) : 0,
                TimeToFullyResidentMs = d.TimeToFullyResidentMs,
                BytesOnWire = bytesOnWire,
                Bytes = new BytesReport(c.Bytes(PagePhase.Live), c.Bytes(PagePhase.Pause), c.Bytes(PagePhase.Push), c.Bytes(PagePhase.FaultReply), c.ControlBytes, bytesOnWire),
                Pages = new PagesReport(c.TotalPages, c.TotalPages - c.ZeroPages, c.ZeroPages, c.ResentPages,
                    c.Pages(PagePhase.Live), c.Pages(PagePhase.Pause), c.Pages(PagePhase.Push), c.Pages(PagePhase.FaultReply), _books?.Sent.NonZeroPages ?? 0, c.DeltaPages),
                PrecopyRounds = _context?.Rounds.Count ?? 0,
                Rounds = _context?.Rounds ?? [],
                NetworkFaults = new FaultReport(d.Faults, d.Requests, stalls.Sum(), Percentile(stalls, 0.5), Percentile(stalls, 0.99), stalls.Length > 0 ? stalls[^1] : 0)
                {
                    InFlightRequests = d.InFlightRequests,
                    AlreadyOnItsWay = _faultServer?.AlreadyOnItsWay ?? 0,
                    RescuedFromPush = _faultServer?.RescuedFromPush ?? 0,
                    SourceThread = _faultServer?.Scheduling,
                    DestinationThread = d.FaultThread,
                    Stages = d.FaultStages,
                    DestinationGcCollections = d.GcCollections,
                    DestinationGcPauseMs = d.GcPauseMs,
                },
                PagesArrived = new ArrivalReport(d.PagesLive, d.PagesPause, d.PagesFault, d.PagesPrefetch, d.PagesPush),
                Prefetch = new PrefetchReport(prefetched, d.PrefetchHits, prefetched - d.PrefetchHits, d.PrefetchByDistance),
                WorkingSet = _policy.UsesWorkingSet && _context is not null
                    ? new WorkingSetReport(_context.WorkingSetPages, _context.WorkingSetPages * GuestMemory.PageSize, _context.Estimator.WindowsClosed, _context.WorkingSetBudgetPages, _context.PausePagesDeferred)
                    : null,
                Decisions = _context?.Decisions ?? [],
                Throttle = _context?.Throttle ?? [],
                Guest = new GuestReport(ipsBefore, ipsDuring, d.IpsAfter,
                    ipsBefore is > 100_000 && ipsDuring is not null ? 1 - (ipsDuring.Value / ipsBefore.Value) : null, _switchover?.InstructionsAtPause ?? 0)
                {
                    IpsPostCopy = d.IpsDuring,
                },
                ThroughputBitsPerSecond = total > 0 ? c.TotalPageBytes * 8 / (total / 1000) : 0,
                Timeline = new TimelineReport(Ms(pauseAt), resumeMs, points),
                Liveness = LivenessSummary(),
                PageFile = _pageFileReport,
                Runtime = new RuntimeReport(pauseAt != 0 && _resumedReceivedAt != 0 ? RuntimeSuspensions.Process.Summarize(pauseAt, _resumedReceivedAt) : null, d.RuntimeSuspensions)
                {
                    SourceJit = _jit ?? JitActivity.Since(_jitAtStart), // (a failed move: until now)
                    DestinationJit = d.Jit,
                },
                Switchover = _resumeAt == 0 || _switchover is not Switchover s ? null : new SwitchoverReport(
                    Ms(s.SelectedAt) - Ms(pauseAt), Ms(s.PausePagesSentAt) - Ms(s.SelectedAt), c.Bytes(PagePhase.Pause),
                    Ms(s.BundleSentAt) - Ms(s.PausePagesSentAt), s.BundleBytes, _handshakeRttMs, _destinationSwitchMs,
                    Ms(_resumedReceivedAt) - Ms(s.BundleSentAt), s.DevicePages, d.SwitchoverAllocatedBytes),
            };
        }

        private LivenessReport LivenessSummary()
        {
            Interruption[] interruptions;
            lock (_interruptions)
            {
                interruptions = [.. _interruptions];
            }

            double detected = Math.Max(_liveness?.DetectedAfterMs ?? 0, interruptions.Length == 0 ? 0 : interruptions.Max(i => i.DetectedAfterMs));
            return new LivenessReport(Options.PeerTimeout.TotalMilliseconds, detected, interruptions);
        }

        private static double? CombineDuring(double? source, double sourceMs, double? destination, double destinationMs)
        {
            double weight = 0, sum = 0;
            if (source is not null && sourceMs > 0)
            {
                sum += source.Value * sourceMs;
                weight += sourceMs;
            }

            if (destination is not null && destinationMs > 0)
            {
                sum += destination.Value * destinationMs;
                weight += destinationMs;
            }

            return weight > 0 ? sum / weight : source ?? destination;
        }

        private static double Percentile(double[] sorted, double q)
            => sorted.Length == 0 ? 0 : sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(q * sorted.Length) - 1)];
    }
}
