using Ferry.Machine.Board;
using Ferry.Migration.Mechanisms;
using Ferry.Migration.Metrics;

namespace Ferry.Migration.Local;

/// <summary>
/// A VM on its own thread in this process, usable as either end of a migration: what unit
/// tests, benchmarks and the host's start-up warm-up migrate between, without sockets.
/// </summary>
public sealed class LocalVm : IMigrationSource, IIncomingVm, IDisposable
{
    private readonly CancellationTokenSource _sampling = new();
    private readonly Task _estimator = Task.CompletedTask;
    private readonly Task _sampler;

    public LocalVm(string name, VirtMachine machine, ulong stopAt = ulong.MaxValue, TimeSpan? workingSetWindow = null)
    {
        Name = name;
        Machine = machine;
        Runner = new MachineRunner(machine, stopAt);
        if (workingSetWindow is TimeSpan window)
        {
            WorkingSet = new WorkingSetEstimator(machine, window);
            _estimator = WorkingSet.RunAsync(_sampling.Token);
        }

        _sampler = SampleAsync();
    }

    public string Name { get; }

    public VirtMachine Machine { get; }

    public MachineRunner Runner { get; }

    public ulong StopAt => Runner.StopAt;

    public WorkingSetEstimator? WorkingSet { get; }

    public InstructionRateMeter Rate { get; } = new();

    public string? AbortReason { get; private set; }

    public bool CompletedHere { get; private set; }

    public bool ResumedHere { get; private set; }

    public Task PauseAsync(CancellationToken cancellation) => Runner.PauseAsync();

    public void ResumeHere()
    {
        ResumedHere = true;
        Runner.Start();
    }

    public void Start() => Runner.Start();

    public void Abort(string reason)
    {
        AbortReason = reason;
        Machine.RequestStop();
    }

    public void Completed() => CompletedHere = true;

    /// <summary>What the VM waits for while its source is away after the resume; null otherwise.</summary>
    public string? NetworkWait { get; private set; }

    /// <summary>How many times the VM was told it waits on the network.</summary>
    public int NetworkWaits { get; private set; }

    public void WaitingOnNetwork(string? detail)
    {
        NetworkWait = detail;
        NetworkWaits += detail is null ? 0 : 1;
    }

    private async Task SampleAsync()
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(10));
        try
        {
            while (await timer.WaitForNextTickAsync(_sampling.Token).ConfigureAwait(false))
            {
                Rate.Sample(Machine.Hart.InstructionsRetired);
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    public void Dispose()
    {
        _sampling.Cancel();
        Runner.Dispose();
        Task.WhenAll(_estimator, _sampler).Wait(TimeSpan.FromSeconds(5));
        Machine.Dispose();
    }
}
