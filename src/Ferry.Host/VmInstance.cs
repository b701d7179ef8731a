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
    private volatile string? _networkWait;
    private bool _disposed;
    private bool _digestPending;

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
        if (initial == VmState.Running)
        {
            StartEstimator();
        }
    }

    public string Name { get; }

    public VirtMachine Machine { get; }

    public string Host { get; }

    public ulong? StopAtValue { get; private set; }

    public ulong StopAt => StopAtValue ?? ulong.MaxValue;

    public WorkingSetEstimator? WorkingSet { get; private set; }

    private Task _estimatorTask = Task.CompletedTask;
    private Task _samplerTask = Task.CompletedTask;

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

    public void Start()
    {
        lock (_lock)
        {
            ConsoleStart = Machine.Console.End;
            _state = VmState.Running;
            _digest = null;
        }

        _runner.Start();
    }

    /// <summary>Starts a VM created here (not by migration): it runs and its working set is tracked.</summary>
    public void Boot()
    {
        Start();
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
                State = _state.ToString().ToLowerInvariant(),
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
                WaitingOnNetwork = _networkWait is not null,
            };
        }
    }

    /// <summary>Stops the VM for good (it keeps its state and console for inspection).</summary>
    public async Task StopAsync()
    {
        await _runner.PauseAsync().ConfigureAwait(false);
        lock (_lock)
        {
            if (_state is VmState.Running or VmState.Paused)
            {
                _state = VmState.Stopped;
            }
        }

        await ComputeDigestAsync().ConfigureAwait(false);
    }

    // ---- IMigrationSource

    public async Task PauseAsync(CancellationToken cancellation)
    {
        lock (_lock)
        {
            _state = VmState.Migrating;
        }

        await _runner.PauseAsync().WaitAsync(cancellation).ConfigureAwait(false);
    }

    public void ResumeHere()
    {
        bool run;
        lock (_lock)
        {
            run = Machine.Exit is null && Machine.Hart.InstructionsRetired < StopAt;
            _state = run ? VmState.Running : VmState.Paused;
            _detail = "an outgoing migration failed; the VM resumed here";
        }

        if (run)
        {
            _runner.Start();
        }
    }

    /// <summary>The VM now runs at the destination: stop sampling and free its memory (the record and console stay).</summary>
    public async Task DepartedAsync(string destination)
    {
        lock (_lock)
        {
            _state = VmState.Migrated;
            _detail = $"migrated to {destination}";
        }

        await ReleaseMachineAsync().ConfigureAwait(false);
    }

    private async Task ReleaseMachineAsync()
    {
        _life.Cancel();
        await Task.WhenAll(_estimatorTask, _samplerTask).ConfigureAwait(false);
        Dispose();
    }

    /// <summary>A failed outgoing migration that could not decide where the VM is: it stays paused here.</summary>
    public void LeftPaused(string reason)
    {
        lock (_lock)
        {
            _state = VmState.Paused;
            _detail = reason;
        }
    }

    /// <summary>Operator's decision after a migration left the VM paused: run it here.</summary>
    public bool Resume()
    {
        lock (_lock)
        {
            if (_state != VmState.Paused || Machine.Exit is not null || Machine.Hart.InstructionsRetired >= StopAt)
            {
                return false;
            }

            _state = VmState.Running;
            _digest = null;
        }

        _runner.Start();
        return true;
    }

    // ---- IIncomingVm

    public void Abort(string reason)
    {
        Machine.RequestStop();
        lock (_lock)
        {
            _state = VmState.Failed;
            _detail = reason;
        }

        _life.Cancel();
    }

    public void WaitingOnNetwork(string? detail) => _networkWait = detail;

    public void Completed()
    {
        StartEstimator();
        if (_digestPending && !_runner.IsRunning)
        {
            _digestPending = false;
            _ = ComputeDigestAsync();
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
        }

        _life.Cancel();
        _runner.Dispose();
        _estimatorTask.Wait(TimeSpan.FromSeconds(5));
        Machine.Dispose();
    }

    private void StartEstimator()
    {
        if (WorkingSet is not null)
        {
            return;
        }

        WorkingSet = new WorkingSetEstimator(Machine, WorkingSetWindow);
        _estimatorTask = WorkingSet.RunAsync(_life.Token);
    }

    private void OnRunEnded(RunOutcome outcome)
    {
        lock (_lock)
        {
            if (_state == VmState.Migrating || _state == VmState.Failed || _state == VmState.Stopped)
            {
                return; // a migration paused it, or it is being discarded or stopped
            }

            _state = outcome == RunOutcome.GuestExited ? VmState.Exited : VmState.Paused;
            if (Machine.Memory.Absent.NextSet(0) >= 0)
            {
                _digestPending = true; // pages are still arriving: digest once they are all here
                return;
            }

            _digest = StateDigest.Compute(Machine);
        }
    }

    private async Task ComputeDigestAsync()
    {
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

public enum VmState
{
    Running,
    Paused,
    Exited,
    Stopped,
    Migrating,
    Incoming,
    Migrated,
    Failed,
}
