namespace Ferry.Machine.Board;

/// <summary>
/// Runs a machine on its own thread (the VM thread) and lets other threads pause it and start
/// it again. The thread is created once and parks between runs, so starting a VM (the last
/// step of a migration's switchover) is a signal, not a thread creation. Pausing returns once
/// no instruction executes; a run also ends by itself when the guest exits or reaches the
/// instruction limit.
/// </summary>
public sealed class MachineRunner : IDisposable
{
    private readonly object _lock = new();
    private readonly SemaphoreSlim _go = new(0);
    private Thread? _thread;
    private TaskCompletionSource<RunOutcome>? _run;
    private volatile bool _disposed;
    private ulong _stopAt;

    public MachineRunner(VirtMachine machine, ulong stopAt = ulong.MaxValue)
    {
        Machine = machine;
        _stopAt = stopAt;
    }

    public VirtMachine Machine { get; }

    /// <summary>Pauses the VM when it has retired this many instructions (ulong.MaxValue: never).</summary>
    public ulong StopAt
    {
        get => _stopAt;
        set => _stopAt = value;
    }

    public bool IsRunning
    {
        get
        {
            lock (_lock)
            {
                return _run is { Task.IsCompleted: false };
            }
        }
    }

    /// <summary>How the last run ended (null while running or before the first run).</summary>
    public RunOutcome? LastOutcome { get; private set; }

    /// <summary>Raised on the VM thread when a run ends (by a pause, the guest's exit or the limit).</summary>
    public event Action<RunOutcome>? RunEnded;

    /// <summary>Creates the VM thread now (it parks), so that a later <see cref="Start"/> costs only a signal.</summary>
    public void Prepare()
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_thread is null)
            {
                _thread = new Thread(Loop) { IsBackground = true, Name = "vm" };
                _thread.Start();
            }
        }
    }

    /// <summary>Starts (or resumes) the VM; no-op if it already runs.</summary>
    public void Start()
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_run is { Task.IsCompleted: false })
            {
                return;
            }

            LastOutcome = null;
            Machine.ClearStopRequest();
            _run = new TaskCompletionSource<RunOutcome>(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        Prepare();
        _go.Release();
    }

    /// <summary>Stops the VM between instructions; completes when it no longer runs.</summary>
    public async Task PauseAsync()
    {
        Task<RunOutcome>? run;
        lock (_lock)
        {
            run = _run?.Task;
        }

        if (run is null || run.IsCompleted)
        {
            return;
        }

        Machine.RequestStop();
        await run.ConfigureAwait(false);
    }

    /// <summary>Waits for the current run to end by itself.</summary>
    public Task<RunOutcome> WaitAsync()
    {
        lock (_lock)
        {
            return _run?.Task ?? Task.FromResult(RunOutcome.Stopped);
        }
    }

    /// <summary>Ends the VM thread (after stopping a run in progress).</summary>
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

        Machine.RequestStop();
        _go.Release();
        _thread?.Join(TimeSpan.FromSeconds(10));
        _go.Dispose();
    }

    private void Loop()
    {
        while (true)
        {
            _go.Wait();
            if (_disposed)
            {
                return;
            }

            TaskCompletionSource<RunOutcome> run;
            lock (_lock)
            {
                run = _run!;
            }

            try
            {
                RunOutcome outcome = Machine.Run(_stopAt);
                LastOutcome = outcome;
                run.TrySetResult(outcome);
                RunEnded?.Invoke(outcome);
            }
            catch (Exception e)
            {
                run.TrySetException(e);
            }
        }
    }
}
