using Ferry.Machine.Board;
using Ferry.Migration.Metrics;
using Ferry.Migration.Protocol;
using Ferry.Migration.Transport;

namespace Ferry.Migration.Local;

/// <summary>
/// One migration inside this process over in-memory connections: the same source,
/// destination, handshake and protocol code as between hosts, minus the sockets.
/// </summary>
public static class LocalMigration
{
    public static async Task<(MigrationReport Report, LocalVm? Destination)> RunAsync(LocalVm source, MigrationOptions options,
        LocalMigrationHooks? hooks = null, CancellationToken cancellation = default)
    {
        IncomingSlot slot = IncomingSlot.Create(source.Name, source.Machine.Config, TimeSpan.FromMinutes(1));
        IncomingSlot expected = hooks?.AdjustSlot?.Invoke(slot) ?? slot;
        (Stream mainA, Stream mainB) = InMemoryTransport.CreatePair();
        (Stream faultA, Stream faultB) = InMemoryTransport.CreatePair();
        var ready = new TaskCompletionSource<LocalVm?>(TaskCreationOptions.RunContinuationsAsynchronously);

        Task destination = Task.Run(async () =>
        {
            var main = new FrameChannel(mainB);
            var fault = new FrameChannel(faultB);
            try
            {
                Hello hello = await MigrationAcceptor.ReadHelloAsync(main, cancellation).ConfigureAwait(false);
                string? error = expected.Validate(hello);
                if (error is not null)
                {
                    await MigrationAcceptor.RefuseAsync(main, error).ConfigureAwait(false);
                    ready.TrySetResult(null);
                    return;
                }

                await MigrationAcceptor.AcceptAsync(main, cancellation).ConfigureAwait(false);
                Task<FrameChannel> faultReady = AcceptFaultAsync(fault, expected, cancellation);
                var vm = new LocalVm(hello.VmName, new VirtMachine(hello.Machine), hello.StopAt);
                vm.Runner.Prepare();
                ready.TrySetResult(vm);
                await new DestinationMigration(hello, vm, main, faultReady).RunAsync(cancellation).ConfigureAwait(false);
            }
            catch (Exception)
            {
                // The source's report says what happened; the destination VM was discarded (Abort).
                ready.TrySetResult(null);
            }
            finally
            {
                // As a host does when a migration ends: the connections close, and the source's
                // threads blocked on them end.
                await main.DisposeAsync().ConfigureAwait(false);
                await fault.DisposeAsync().ConfigureAwait(false);
            }
        }, CancellationToken.None);

        var migration = new SourceMigration(source, options, slot.Token, (role, _) =>
        {
            Stream stream = role == ConnectionRole.Main ? mainA : faultA;
            return Task.FromResult(hooks?.Intercept?.Invoke(role, stream) ?? stream);
        }, "local");
        hooks?.OnStarted?.Invoke(migration);
        MigrationReport report = await migration.RunAsync(cancellation).ConfigureAwait(false);
        await destination.WaitAsync(TimeSpan.FromSeconds(60), CancellationToken.None).ConfigureAwait(false);
        return (report, await ready.Task.ConfigureAwait(false));
    }

    private static async Task<FrameChannel> AcceptFaultAsync(FrameChannel fault, IncomingSlot slot, CancellationToken cancellation)
    {
        Hello hello = await MigrationAcceptor.ReadHelloAsync(fault, cancellation).ConfigureAwait(false);
        if (hello.Role != ConnectionRole.Fault || !slot.Matches(hello.Token))
        {
            await MigrationAcceptor.RefuseAsync(fault, "not this migration's fault connection").ConfigureAwait(false);
            throw new ProtocolException("bad fault connection");
        }

        await MigrationAcceptor.AcceptAsync(fault, cancellation).ConfigureAwait(false);
        return fault;
    }

    /// <summary>
    /// Migrates a small VM running <paramref name="image"/> once per strategy, so that the
    /// code of every phase is compiled before a real migration's downtime depends on it.
    /// </summary>
    public static async Task WarmUpAsync(GuestImage image, CancellationToken cancellation = default)
    {
        foreach (StrategyKind strategy in new[] { StrategyKind.PreCopy, StrategyKind.PostCopy, StrategyKind.Hybrid })
        {
            var machine = new VirtMachine(new MachineConfig { MemorySize = 16UL << 20 });
            machine.Load(image);
            using var source = new LocalVm("warm-up", machine, workingSetWindow: TimeSpan.FromMilliseconds(10));
            source.Start();
            await Task.Delay(30, cancellation).ConfigureAwait(false);
            (_, LocalVm? destination) = await RunAsync(source, new MigrationOptions { Strategy = strategy, LocalityPages = 4 }, null, cancellation).ConfigureAwait(false);
            destination?.Dispose();
        }
    }
}

/// <summary>Ways for tests to provoke failures in a local migration.</summary>
public sealed record LocalMigrationHooks
{
    /// <summary>Changes what the destination expects (wrong size, wrong token...).</summary>
    public Func<IncomingSlot, IncomingSlot>? AdjustSlot { get; init; }

    /// <summary>Stands between the source and its connections (to corrupt or cut them).</summary>
    public Func<ConnectionRole, Stream, Stream>? Intercept { get; init; }

    /// <summary>Sees the source migration as it starts (to cancel it).</summary>
    public Action<SourceMigration>? OnStarted { get; init; }
}
