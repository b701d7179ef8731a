using System.Text.Json.Serialization;
using Ferry.Machine.Board;
using Ferry.Machine.State;
using Ferry.Migration;
using Ferry.Migration.Mechanisms;
using Ferry.Migration.Metrics;

namespace Ferry.Host;

/// <summary>
/// One VM on this host: the machine, its thread, console, speed samples and working-set
/// estimate, and its lifecycle. It is both a migration source (<see cref="IMigrationSource"/>)
/// and, when it arrives by migration, the incoming VM (<see cref="IIncomingVm"/>).
/// <para>Ownership: the lifecycle is one <see cref="VmState"/> changed only by <see cref="Move"/>,
/// which rejects every move <see cref="Legal"/> does not list. While a migration holds the VM
/// (<see cref="VmState.Incoming"/>, <see cref="VmState.Arriving"/>, <see cref="VmState.Departing"/>,
/// <see cref="VmState.Migrating"/>) the operator cannot stop, resume or remove it
/// (<see cref="Refusal"/> says why).</para>
/// <para>The machine's memory is native memory: it is freed only when the last user has left.
/// Every thread that reads or writes it outside the VM's own thread (a migration, a digest)
/// holds a <see cref="MachineLease"/>; <see cref="Dispose"/> retires the VM (no new lease) and
/// returns the VM's own reference, and whoever returns the last one frees the machine.</para>
/// </summary>
public sealed class VmInstance : IMigrationSource, IIncomingVm, IDisposable
{
    public static readonly TimeSpan WorkingSetWindow = TimeSpan.FromMilliseconds(100);

    private readonly object _lock = new();
    private readonly MachineRunner _runner;
    private readonly CancellationTokenSource _life = new();
    private VmState _state;
    private string? _digest;
    private string? _detail;
    private string? _movedTo;
    private bool _retired;
    private int _users = 1; // the VM's own reference, returned by Dispose
    private volatile string? _networkWait;
    private bool _digestPending;
    private bool _runAfterMigration;

    public VmInstance(string name, VirtMachine machine, ulong? stopAt, VmState initial, string host)
    {
        Name = name;
        Machine = machine;
        Host = host;
        StopAtValue = stopAt;
        _state = initial;
        _runner = new MachineRunner(machine, stopAt ?? ulong.MaxValue);
        _runner.RunEnded += OnRunEnded;
        ConsoleStart = 0;
        _samplerTask = SampleAsync(_life.Token);
    }

    public string Name { get; }

    public VirtMachine Machine { get; }

    public string Host { get; }

    public ulong? StopAtValue { get; private set; }

    public ulong StopAt => StopAtValue ?? ulong.MaxValue;

    public WorkingSetEstimator? WorkingSet { get; private set; }

    private Task _estimatorTask = Task.CompletedTask;
    private readonly Task _samplerTask;

    public InstructionRateMeter Rate { get; } = new();

    public long ConsoleStart { get; private set; }

    /// <summary>The migration taking this VM away or bringing it here, if any.</summary>
    public string? MigrationId { get; set; }

    public VmState State
    {
        get
        {
            lock (_lock)
            {
                return _state;
            }
        }
    }

    /// <summary>True while the VM exists here as a live VM (its name is taken on this host).</summary>
    public bool HoldsName => State is not (VmState.Migrated or VmState.Failed);

    /// <summary>True while a migration holds the VM (to this host or away from it).</summary>
    public static bool HeldByMigration(VmState state) => state is VmState.Incoming or VmState.Arriving or VmState.Departing or VmState.Migrating;

    // ---- the state machine

    /// <summary>Every legal move of the lifecycle; anything else is a bug or a request to refuse.</summary>
    public static bool Legal(VmState from, VmState to) => (from, to) switch
    {
        (VmState.Incoming, VmState.Running) => true,                                          // created here by the API and booted
        (VmState.Incoming, VmState.Arriving) => true,                                         // switchover: it runs here, pages still arrive
        (VmState.Incoming or VmState.Arriving, VmState.Failed) => true,                      // the incoming migration failed
        (VmState.Arriving, VmState.Running or VmState.Paused or VmState.Exited) => true,     // every page arrived and was verified
        (VmState.Running, VmState.Paused or VmState.Exited) => true,                         // the run ended (stop-at, guest exit)
        (VmState.Running or VmState.Paused, VmState.Stopped) => true,                        // the operator stopped it
        (VmState.Paused, VmState.Running) => true,                                            // the operator resumed it
        (VmState.Running or VmState.Paused, VmState.Departing) => true,                      // an outgoing migration began
        (VmState.Departing, VmState.Migrating) => true,                                       // the switchover paused it
        (VmState.Departing or VmState.Migrating, VmState.Running or VmState.Paused or VmState.Exited) => true, // the migration did not take it
        (VmState.Departing or VmState.Migrating, VmState.Migrated) => true,                  // the destination holds it now
        _ => false,
    };

    /// <summary>The one place the state changes. Call with <see cref="_lock"/> held.</summary>
    private void Move(VmState to, string? detail = null)
    {
        if (!Legal(_state, to))
        {
            throw new VmStateException($"VM '{Name}' is {Describe(_state)}; it cannot become {Describe(to)}");
        }

        _state = to;
        if (detail is not null)
        {
            _detail = detail;
        }
    }

    /// <summary>Why an operator's <paramref name="action"/> is refused in <paramref name="state"/>, or null if it is allowed.</summary>
    public string? Refusal(VmState state, VmAction action)
    {
        string migration = MigrationId is null ? "" : $" ({MigrationId})";
        return (action, state) switch
        {
            (_, VmState.Incoming) => $"VM '{Name}' is waiting for its incoming migration{migration}; it belongs to this host only once the migration completes",
            (_, VmState.Arriving) => $"VM '{Name}' is still arriving by migration{migration} (pages are missing); {Verb(action)} it once the migration completes",
            (_, VmState.Departing) => $"VM '{Name}' is migrating{migration}; cancel the migration first (ferry migrate --cancel, or POST /v1/migrations/ID/cancel)",
            (_, VmState.Migrating) => $"VM '{Name}' is being handed over to the destination{migration}; it can no longer be changed here",
            (VmAction.Stop, VmState.Migrated or VmState.Failed) => $"VM '{Name}' is {Describe(state)}; nothing runs here",
            (VmAction.Resume, not VmState.Paused) => $"VM '{Name}' is {Describe(state)}, not resumable",
            (VmAction.Remove, VmState.Running) => $"VM '{Name}' is running; stop it first",
            _ => null,
        };
    }

    private static string Verb(VmAction action) => action switch
    {
        VmAction.Stop => "stop",
        VmAction.Resume => "resume",
        _ => "remove",
    };

    public static string Describe(VmState state) => EnumNames.Kebab(state);

    // ---- the machine's users

    /// <summary>A reference on the machine's memory: it is not freed before every lease is disposed.</summary>
    public MachineLease? TryLease()
    {
        lock (_lock)
        {
            if (_retired)
            {
                return null;
            }

            _users++;
            return new MachineLease(this);
        }
    }

    internal void ReturnLease()
    {
        bool last;
        lock (_lock)
        {
            last = --_users == 0;
        }

        if (last)
        {
            FreeMachine();
        }
    }

    /// <summary>Retires the VM: no new lease; the machine is freed when the last one is returned.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_retired)
            {
                return;
            }

            _retired = true;
        }

        _life.Cancel();
        Machine.RequestStop();
        ReturnLease();
    }

    private void FreeMachine()
    {
        _runner.Dispose(); // joins the VM's thread
        try
        {
            Task.WhenAll(_estimatorTask, _samplerTask).Wait(TimeSpan.FromSeconds(5));
        }
        catch (AggregateException)
        {
        }

        Machine.Dispose();
    }

    // ---- lifecycle

    /// <summary>Starts a VM created here (not by migration): it runs and its working set is tracked.</summary>
    public void Boot()
    {
        lock (_lock)
        {
            ConsoleStart = Machine.Console.End;
            Move(VmState.Running);
            _digest = null;
        }

        _runner.Start();
        StartEstimator();
    }

    /// <summary>An incoming VM learns where to stop from the source's Hello (before it first runs).</summary>
    public void AssignStopAt(ulong? stopAt)
    {
        StopAtValue = stopAt;
        _runner.StopAt = stopAt ?? ulong.MaxValue;
    }

    /// <summary>Creates the VM thread ahead of the switchover, so that resuming is only a signal.</summary>
    public void PrepareToRun() => _runner.Prepare();

    public VmStatus Status()
    {
        lock (_lock)
        {
            return new VmStatus
            {
                Name = Name,
                State = _state,
                InstructionsRetired = Machine.Hart.InstructionsRetired,
                Host = Host,
                MemoryBytes = Machine.Config.MemorySize,
                Icount = Machine.Config.Icount,
                StopAt = StopAtValue,
                ExitStatus = Machine.Exit?.Status,
                Digest = _digest,
                ConsoleBytes = Machine.Console.End,
                ConsoleStart = ConsoleStart,
                Migration = MigrationId,
                Detail = _networkWait ?? _detail,
                MovedTo = _movedTo,
                WaitingOnNetwork = _networkWait is not null,
                Disk = Machine.Devices.Disk,
                Net = Machine.Devices.Net?.ToString(),
                Tap = Machine.Virtio.Select(t => t.Device).OfType<Ferry.Machine.Devices.Virtio.VirtioNet>().FirstOrDefault()?.Interface,
            };
        }
    }

    /// <summary>
    /// Queues console input (keystrokes) for the UART while the VM runs here. False once it is
    /// not running here: paused for a switchover (`migrating`; the UART's queue has crossed, or is about to,
    /// with the device state), stopped, or gone; the caller sends it where the VM is.
    /// </summary>
    public bool TryConsoleInput(ReadOnlySpan<byte> bytes)
    {
        lock (_lock)
        {
            if (_state is not (VmState.Running or VmState.Departing or VmState.Arriving))
            {
                return false;
            }

            Machine.Uart.EnqueueInput(bytes);
            return true;
        }
    }

    /// <summary>Stops the VM for good (it keeps its state and console for inspection). Refused while a migration holds it.</summary>
    public async Task StopAsync()
    {
        lock (_lock)
        {
            if (Refusal(_state, VmAction.Stop) is string refusal)
            {
                throw new VmStateException(refusal);
            }

            if (_state is VmState.Running or VmState.Paused)
            {
                Move(VmState.Stopped);
            }
        }

        await _runner.PauseAsync().ConfigureAwait(false);
        await ComputeDigestAsync().ConfigureAwait(false);
    }

    /// <summary>Operator's decision (a paused VM, e.g. left so by a migration): run it here.</summary>
    public void Resume()
    {
        lock (_lock)
        {
            if (Refusal(_state, VmAction.Resume) is string refusal)
            {
                throw new VmStateException(refusal);
            }

            if (Machine.Exit is not null || Machine.Hart.InstructionsRetired >= StopAt)
            {
                throw new VmStateException($"VM '{Name}' has {(Machine.Exit is not null ? "exited" : "reached its stop-at count")}; it cannot run further");
            }

            Move(VmState.Running);
            _digest = null;
        }

        _runner.Start();
    }

    /// <summary>Checks that the operator may remove the VM now, and retires it from the next call on.</summary>
    public void CheckRemovable()
    {
        lock (_lock)
        {
            if (Refusal(_state, VmAction.Remove) is string refusal)
            {
                throw new VmStateException(refusal);
            }
        }
    }

    // ---- IMigrationSource

    /// <summary>An outgoing migration takes the VM (it keeps running here until the switchover).</summary>
    public void BeginMigration(string id)
    {
        lock (_lock)
        {
            if (_state is not (VmState.Running or VmState.Paused))
            {
                throw new VmStateException(HeldByMigration(_state)
                    ? Refusal(_state, VmAction.Migrate)!
                    : $"VM '{Name}' is {Describe(_state)}; only a running or paused VM can migrate");
            }

            _runAfterMigration = _state == VmState.Running;
            Move(VmState.Departing, "");
            MigrationId = id;
        }
    }

    public async Task PauseAsync(CancellationToken cancellation)
    {
        lock (_lock)
        {
            Move(VmState.Migrating);
        }

        await _runner.PauseAsync().WaitAsync(cancellation).ConfigureAwait(false);
    }

    public void ResumeHere() => Returned("an outgoing migration failed; the VM resumed here");

    /// <summary>The migration ended and the VM is still this host's: it runs again if it ran before.</summary>
    public void Returned(string detail)
    {
        bool run;
        lock (_lock)
        {
            if (_state is not (VmState.Departing or VmState.Migrating))
            {
                return; // ResumeHere already brought it back
            }

            bool canRun = Machine.Exit is null && Machine.Hart.InstructionsRetired < StopAt;
            run = canRun && _runAfterMigration;
            Move(run ? VmState.Running : Machine.Exit is not null ? VmState.Exited : VmState.Paused, detail);
        }

        if (run)
        {
            _runner.Start();
        }
        else
        {
            _ = ComputeDigestAsync();
        }
    }

    /// <summary>The VM now runs at the destination: stop sampling and free its memory (the record and console stay).</summary>
    public Task DepartedAsync(string destination, string? destinationApi)
    {
        lock (_lock)
        {
            Move(VmState.Migrated, $"migrated to {destination}");
            _movedTo = destinationApi;
        }

        Dispose();
        return Task.CompletedTask;
    }

    /// <summary>A failed outgoing migration that could not decide where the VM is: it stays paused here.</summary>
    public void LeftPaused(string reason)
    {
        lock (_lock)
        {
            _runAfterMigration = false;
        }

        Returned(reason);
    }

    // ---- IIncomingVm

    /// <summary>Switchover: the VM runs here from its restored state while its pages arrive.</summary>
    public void Start()
    {
        lock (_lock)
        {
            ConsoleStart = Machine.Console.End;
            Move(VmState.Arriving);
            _digest = null;
        }

        _runner.Start();
    }

    public void Abort(string reason)
    {
        Machine.RequestStop();
        lock (_lock)
        {
            Move(VmState.Failed, reason);
        }

        _life.Cancel();
    }

    public void WaitingOnNetwork(string? detail) => _networkWait = detail;

    public void Completed()
    {
        bool digest;
        lock (_lock)
        {
            bool running = _runner.IsRunning;
            Move(running ? VmState.Running : Machine.Exit is not null ? VmState.Exited : VmState.Paused);
            digest = !running && _digestPending;
            _digestPending = false;
        }

        StartEstimator();
        if (digest)
        {
            _ = ComputeDigestAsync();
        }
    }

    private void StartEstimator()
    {
        lock (_lock)
        {
            if (WorkingSet is not null || _retired)
            {
                return;
            }

            WorkingSet = new WorkingSetEstimator(Machine, WorkingSetWindow);
            _estimatorTask = WorkingSet.RunAsync(_life.Token);
        }
    }

    private void OnRunEnded(RunOutcome outcome)
    {
        lock (_lock)
        {
            if (_state == VmState.Arriving)
            {
                _digestPending = true; // pages are still arriving: digest once they are all here
                return;
            }

            if (_state != VmState.Running)
            {
                return; // a migration paused it, or it is being discarded or stopped
            }

            Move(outcome == RunOutcome.GuestExited ? VmState.Exited : VmState.Paused);
            _digest = StateDigest.Compute(Machine); // on the VM's own thread, which has just stopped executing
        }
    }

    private async Task ComputeDigestAsync()
    {
        using MachineLease? lease = TryLease();
        if (lease is null)
        {
            return;
        }

        string digest = await Machine.AtSafePointAsync(() => StateDigest.Compute(Machine)).ConfigureAwait(false);
        lock (_lock)
        {
            _digest = digest;
        }
    }

    private async Task SampleAsync(CancellationToken cancellation)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(50));
        try
        {
            do
            {
                Rate.Sample(Machine.Hart.InstructionsRetired);
            }
            while (await timer.WaitForNextTickAsync(cancellation).ConfigureAwait(false));
        }
        catch (OperationCanceledException)
        {
        }
    }
}

/// <summary>One user's reference on a VM's machine (see <see cref="VmInstance.TryLease"/>).</summary>
public sealed class MachineLease : IDisposable
{
    private VmInstance? _vm;

    internal MachineLease(VmInstance vm) => _vm = vm;

    public void Dispose() => Interlocked.Exchange(ref _vm, null)?.ReturnLease();
}

/// <summary>
/// A VM's lifecycle. A migration holds the VM in <see cref="Incoming"/> and <see cref="Arriving"/>
/// (destination) and in <see cref="Departing"/> and <see cref="Migrating"/> (source). In the
/// API (and what Ferry prints) by its kebab-case name.
/// </summary>
[JsonConverter(typeof(KebabCaseEnumConverter<VmState>))]
public enum VmState
{
    /// <summary>Destination: prepared for an incoming migration, or receiving it before the switchover. Nothing runs.</summary>
    Incoming,

    /// <summary>Destination after the switchover: the VM runs here while its remaining pages arrive.</summary>
    Arriving,

    Running,

    /// <summary>Not executing but resumable (stop-at reached, or left so by a migration).</summary>
    Paused,

    Exited,

    /// <summary>Stopped by the operator for good (state and console kept for inspection).</summary>
    Stopped,

    /// <summary>Source before the switchover: the VM still runs (or stays paused) here while a migration copies it.</summary>
    Departing,

    /// <summary>Source from the switchover's pause on: paused here until the destination holds the VM.</summary>
    Migrating,

    /// <summary>Left for another host: only the record and console remain.</summary>
    Migrated,

    /// <summary>An incoming VM whose migration failed: the source keeps the VM.</summary>
    Failed,
}

/// <summary>What an operator asks of a VM (the moves <see cref="VmInstance.Refusal"/> judges).</summary>
public enum VmAction
{
    Stop,
    Resume,
    Remove,
    Migrate,
}

/// <summary>A request the VM's state does not allow: HTTP 409 with this reason.</summary>
public sealed class VmStateException(string message) : Exception(message);
