namespace Ferry.Machine.Board;

/// <summary>
/// Runs a machine on its own thread (the VM thread) and lets other threads pause it and start
/// it again. Pausing returns once no instruction executes; the run ends by itself when the
/// guest exits or reaches the instruction limit.
/// </summary>
public sealed class MachineRunner
{
    private readonly object _lock = new();
    private Task<RunOutcome>? _run;
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
                return _run is { IsCompleted: false };
            }
        }
    }

    /// <summary>How the last run ended (null while running or before the first run).</summary>
    public RunOutcome? LastOutcome { get; private set; }

    /// <summary>Raised on the VM thread when a run ends (by a pause, the guest's exit or the limit).</summary>
    public event Action<RunOutcome>? RunEnded;

    /// <summary>Starts (or resumes) the VM on a new thread; no-op if it already runs.</summary>
    public void Start()
    {
        lock (_lock)
        {
            if (_run is { IsCompleted: false })
            {
                return;
            }

            LastOutcome = null;
            Machine.ClearStopRequest();
            var done = new TaskCompletionSource<RunOutcome>(TaskCreationOptions.RunContinuationsAsynchronously);
            var thread = new Thread(() =>
            {
                try
                {
                    RunOutcome outcome = Machine.Run(_stopAt);
                    LastOutcome = outcome;
                    done.SetResult(outcome);
                    RunEnded?.Invoke(outcome);
                }
                catch (Exception e)
                {
                    done.TrySetException(e);
                }
            })
            {
                IsBackground = true,
                Name = "vm",
            };
            _run = done.Task;
            thread.Start();
        }
    }

    /// <summary>Stops the VM between instructions; completes when it no longer runs.</summary>
    public async Task PauseAsync()
    {
        Task<RunOutcome>? run;
        lock (_lock)
        {
            run = _run;
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
            return _run ?? Task.FromResult(RunOutcome.Stopped);
        }
    }
}
