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
        var destination = new LocalDestination(hooks?.AdjustSlot?.Invoke(slot) ?? slot, cancellation);

        // Every connection (the first two, and those of each reconnection) is a new in-memory
        // pair whose far end the destination serves as a host does.
        var migration = new SourceMigration(source, options, slot.Token, (role, _) =>
        {
            (Stream a, Stream b) = InMemoryTransport.CreatePair();
            destination.Serve(b);
            return Task.FromResult(hooks?.Intercept?.Invoke(role, a) ?? a);
        }, "local");
        hooks?.OnStarted?.Invoke(migration);
        MigrationReport report = await migration.RunAsync(cancellation).ConfigureAwait(false);
        LocalVm? vm = await destination.FinishAsync().ConfigureAwait(false);
        return (report, vm);
    }

    /// <summary>The destination end of a local migration: the same handshake, pairing and recovery as a host's.</summary>
    private sealed class LocalDestination(IncomingSlot expected, CancellationToken cancellation)
    {
        private readonly ResumeDesk _desk = new();
        private readonly TaskCompletionSource<LocalVm?> _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource<FrameChannel> _fault = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly List<Task> _connections = [];
        private Task _migration = Task.CompletedTask;
        private int _mainTaken;

        public void Serve(Stream stream)
        {
            lock (_connections)
            {
                _connections.Add(Task.Run(() => ServeAsync(new FrameChannel(stream)), CancellationToken.None));
            }
        }

        private async Task ServeAsync(FrameChannel channel)
        {
            bool owned = false;
            try
            {
                Hello hello = await MigrationAcceptor.ReadHelloAsync(channel, cancellation).ConfigureAwait(false);
                if (hello.Resume)
                {
                    owned = await _desk.HandleAsync(hello, channel, cancellation).ConfigureAwait(false);
                    return;
                }

                if (hello.Role == ConnectionRole.Fault)
                {
                    if (!expected.Matches(hello.Token) || _fault.Task.IsCompleted)
                    {
                        await MigrationAcceptor.RefuseAsync(channel, "not this migration's fault connection").ConfigureAwait(false);
                        return;
                    }

                    await MigrationAcceptor.AcceptAsync(channel, cancellation).ConfigureAwait(false);
                    owned = _fault.TrySetResult(channel);
                    return;
                }

                string? error = Interlocked.Exchange(ref _mainTaken, 1) == 1 ? "this migration has started already" : expected.Validate(hello);
                if (error is not null)
                {
                    await MigrationAcceptor.RefuseAsync(channel, error).ConfigureAwait(false);
                    _ready.TrySetResult(null);
                    return;
                }

                await MigrationAcceptor.AcceptAsync(channel, cancellation).ConfigureAwait(false);
                var vm = new LocalVm(hello.VmName, new VirtMachine(hello.Machine), hello.StopAt);
                vm.Runner.Prepare();
                _ready.TrySetResult(vm);
                var migration = new DestinationMigration(hello, vm, channel, _fault.Task);
                _desk.Register(hello.Token, migration);
                owned = true;
                _migration = RunMigrationAsync(migration, channel);
                await _migration.ConfigureAwait(false);
            }
            catch (Exception)
            {
                // The source's report says what happened.
                _ready.TrySetResult(null);
            }
            finally
            {
                if (!owned)
                {
                    await channel.DisposeAsync().ConfigureAwait(false);
                }
            }
        }

        private async Task RunMigrationAsync(DestinationMigration migration, FrameChannel main)
        {
            try
            {
                await migration.RunAsync(cancellation).ConfigureAwait(false);
            }
            catch (Exception)
            {
                // The destination VM was discarded (Abort); the source's report says why.
            }
            finally
            {
                // As a host does when a migration ends: the connections close, and the source's
                // threads blocked on them end.
                await main.DisposeAsync().ConfigureAwait(false);
                if (_fault.Task.IsCompletedSuccessfully)
                {
                    await _fault.Task.Result.DisposeAsync().ConfigureAwait(false);
                }
            }
        }

        /// <summary>Once the source has its report: the destination VM, or null if there is none.</summary>
        public async Task<LocalVm?> FinishAsync()
        {
            Task[] connections;
            lock (_connections)
            {
                connections = [.. _connections];
            }

            await Task.WhenAll(connections).WaitAsync(TimeSpan.FromSeconds(60), CancellationToken.None).ConfigureAwait(false);
            return await _ready.Task.ConfigureAwait(false);
        }
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
