using Ferry.Machine.Board;
using Ferry.Machine.State;
using Ferry.Migration.Mechanisms;
using Ferry.Migration.Metrics;
using Ferry.Migration.Protocol;
using Ferry.Migration.Transport;

namespace Ferry.Migration.Tests;

/// <summary>A VM on a thread, as the host agent runs it, for both ends of an in-memory migration.</summary>
internal sealed class TestVm : IMigrationSource, IIncomingVm, IDisposable
{
    private readonly CancellationTokenSource _sampling = new();

    public TestVm(string name, VirtMachine machine, ulong stopAt, bool estimator)
    {
        Name = name;
        Machine = machine;
        Runner = new MachineRunner(machine, stopAt);
        if (estimator)
        {
            WorkingSet = new WorkingSetEstimator(machine, TimeSpan.FromMilliseconds(20));
            _ = WorkingSet.RunAsync(_sampling.Token);
        }

        _ = SampleAsync();
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

    private async Task SampleAsync()
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(10));
        try
        {
            while (await timer.WaitForNextTickAsync(_sampling.Token))
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
        Machine.RequestStop();
        Runner.WaitAsync().Wait(TimeSpan.FromSeconds(5));
        Machine.Dispose();
    }
}

internal static class Harness
{
    public static string GuestPath(string name)
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Ferry.slnx")))
        {
            dir = dir.Parent;
        }

        return Path.Combine(dir?.FullName ?? throw new InvalidOperationException("repository root not found"), "guests", "bin", name + ".elf");
    }

    public static VirtMachine Boot(string guest, string? config = null, ulong memory = 64UL << 20)
    {
        GuestImage image = GuestImage.Load(GuestPath(guest));
        if (config is not null)
        {
            image = image.WithConfig(GuestImage.ParseConfig(config));
        }

        var machine = new VirtMachine(new MachineConfig { MemorySize = memory, Icount = true, IdleSleep = false });
        machine.Load(image);
        return machine;
    }

    /// <summary>The unmigrated reference: digest and console at exactly <paramref name="stopAt"/> instructions.</summary>
    public static (string Digest, byte[] Console) Reference(string guest, string? config, ulong memory, ulong stopAt)
    {
        using VirtMachine m = Boot(guest, config, memory);
        m.Run(stopAt);
        return (StateDigest.Compute(m), m.Console.Read(0).Bytes);
    }

    /// <summary>
    /// Migrates a running VM over in-memory connections once it has retired
    /// <paramref name="migrateAfter"/> instructions, then lets the destination run to
    /// <paramref name="stopAt"/>. Returns the report and both VMs.
    /// </summary>
    public static async Task<(MigrationReport Report, TestVm Source, TestVm Destination)> MigrateAsync(
        string guest, string? config, ulong memory, ulong migrateAfter, ulong stopAt, MigrationOptions options,
        Func<Hello, IncomingSlot, IncomingSlot>? tamperSlot = null)
    {
        var source = new TestVm("vm1", Boot(guest, config, memory), stopAt, estimator: true);
        source.Runner.Start();
        while (source.Machine.Hart.InstructionsRetired < migrateAfter && source.Runner.IsRunning)
        {
            await Task.Delay(2);
        }

        var slot = IncomingSlot.Create("vm1", source.Machine.Config, TimeSpan.FromMinutes(1));
        (Stream mainA, Stream mainB) = InMemoryTransport.CreatePair();
        (Stream faultA, Stream faultB) = InMemoryTransport.CreatePair();
        TestVm? destination = null;
        var destinationReady = new TaskCompletionSource<TestVm?>();

        Task destinationTask = Task.Run(async () =>
        {
            var main = new FrameChannel(mainB);
            var fault = new FrameChannel(faultB);
            Hello hello = await MigrationAcceptor.ReadHelloAsync(main, CancellationToken.None);
            IncomingSlot effective = tamperSlot?.Invoke(hello, slot) ?? slot;
            string? error = effective.Validate(hello);
            if (error is not null)
            {
                await MigrationAcceptor.RefuseAsync(main, error);
                destinationReady.SetResult(null);
                return;
            }

            await MigrationAcceptor.AcceptAsync(main, CancellationToken.None);
            var faultReady = Task.Run(async () =>
            {
                Hello fh = await MigrationAcceptor.ReadHelloAsync(fault, CancellationToken.None);
                if (!slot.Matches(fh.Token) || fh.Role != ConnectionRole.Fault)
                {
                    throw new ProtocolException("bad fault hello");
                }

                await MigrationAcceptor.AcceptAsync(fault, CancellationToken.None);
                return fault;
            });
            var machine = new VirtMachine(hello.Machine);
            destination = new TestVm("vm1", machine, hello.StopAt, estimator: false);
            destinationReady.SetResult(destination);
            var migration = new DestinationMigration(hello, destination, main, faultReady);
            try
            {
                await migration.RunAsync(CancellationToken.None);
            }
            catch (Exception)
            {
                // The source's report says what happened.
            }
        });

        var sourceMigration = new SourceMigration(source, options, slot.Token,
            (role, _) => Task.FromResult(role == ConnectionRole.Main ? mainA : faultA), "test");
        MigrationReport report = await sourceMigration.RunAsync(CancellationToken.None);
        await destinationTask.WaitAsync(TimeSpan.FromSeconds(30));
        TestVm? dest = await destinationReady.Task;
        return (report, source, dest!);
    }
}
