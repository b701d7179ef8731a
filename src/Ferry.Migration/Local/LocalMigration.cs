using Ferry.Machine.Board;
using Ferry.Machine.Cpu;
using Ferry.Migration.Metrics;
using Ferry.Migration.Protocol;
using Ferry.Migration.Strategies;
using Ferry.Migration.Transport;

namespace Ferry.Migration.Local;

/// <summary>
/// One migration inside this process over in-memory connections: the same source,
/// destination, handshake and protocol code as between hosts, minus the sockets.
/// </summary>
public static class LocalMigration
{
    /// <summary>
    /// The destination's endpoint on the migration's own in-memory transport: a host name, as
    /// TLS checks the name dialled against the destination's certificate.
    /// </summary>
    public const string Endpoint = "localhost:7700";

    /// <summary>
    /// The destination's devices, as a destination host builds them: the same disk (storage both
    /// sides see) and a TAP of its own on the same bridge (named by the kernel: the source still
    /// holds its own) with the VM's MAC.
    /// </summary>
    public static MachineDevices DestinationDevices(MachineDevices source) =>
        source with { Net = source.Net is null ? null : source.Net with { Ifname = null } };

    public static async Task<(MigrationReport Report, LocalVm? Destination)> RunAsync(LocalVm source, MigrationOptions options,
        LocalMigrationHooks? hooks = null, CancellationToken cancellation = default)
    {
        IncomingSlot slot = IncomingSlot.Create(source.Name, source.Machine.Config, TimeSpan.FromMinutes(1));
        IncomingSlot expected = hooks?.AdjustSlot?.Invoke(slot) ?? slot;
        MigrationTransport network = hooks?.Network ?? new InMemoryTransport();
        MigrationTransport sourceTransport = hooks?.SourceTransport?.Invoke(network) ?? network;
        MigrationTransport destinationTransport = hooks?.DestinationTransport?.Invoke(network) ?? network;
        var ready = new TaskCompletionSource<LocalVm?>(TaskCreationOptions.RunContinuationsAsynchronously);
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        int claimed = 0;
        var desk = new ResumeDesk(); // a source reconnecting after a lost link finds its migration here, as at a host

        await using var listener = new MigrationListener(destinationTransport.Listen(hooks?.ListenAt ?? Endpoint), async (incoming, ct) =>
        {
            try
            {
                string? error = Interlocked.Exchange(ref claimed, 1) == 0 ? expected.Validate(incoming.Hello) : "the slot was used";
                if (error is not null)
                {
                    await incoming.RefuseAsync(error).ConfigureAwait(false);
                    return;
                }

                await incoming.AcceptAsync(ct).ConfigureAwait(false);
                Hello hello = incoming.Hello;
                var vm = new LocalVm(hello.VmName, new VirtMachine(hello.Machine, devices: DestinationDevices(source.Machine.Devices)), hello.StopAt);
                vm.Runner.Prepare();
                ready.TrySetResult(vm);
                var destination = new DestinationMigration(hello, vm, incoming.Main, incoming.Fault, incoming.Bulk);
                desk.Register(hello.Token, destination);
                await destination.RunAsync(cancellation).ConfigureAwait(false);
            }
            catch (Exception)
            {
                // The source's report says what happened; the destination VM was discarded (Abort).
            }
            finally
            {
                // As a host does when a migration ends, the listener then closes the connections,
                // and the source's threads blocked on them end.
                ready.TrySetResult(null);
                done.TrySetResult();
            }
        }, hooks?.OnRefused, onResume: (hello, channel, _, ct) => desk.HandleAsync(hello, channel, ct));
        listener.Start(CancellationToken.None);

        var migration = new SourceMigration(source, options, slot.Token, async (role, ct) =>
        {
            Stream stream = await sourceTransport.ConnectAsync(listener.Endpoint, ct).ConfigureAwait(false);
            return hooks?.Intercept?.Invoke(role, stream) ?? stream;
        }, "local");
        hooks?.OnStarted?.Invoke(migration);
        MigrationReport report = await migration.RunAsync(cancellation).ConfigureAwait(false);
        if (Volatile.Read(ref claimed) == 1)
        {
            await done.Task.WaitAsync(TimeSpan.FromSeconds(60), CancellationToken.None).ConfigureAwait(false);
        }

        ready.TrySetResult(null);
        return (report, await ready.Task.ConfigureAwait(false));
    }

    /// <summary>
    /// Migrates a small VM running <paramref name="image"/> once per strategy, so that the
    /// code of every phase is compiled before a real migration's downtime depends on it. With
    /// <paramref name="tls"/>, over TLS too (the fault path's records then are, as well); a
    /// certificate not issued for "localhost" fails that handshake, which costs only the warm-up.
    /// Returns how many translations of the guest's code its VMs compiled (each a method for the
    /// JIT, as a new VM's always are; not the migration's code).
    /// </summary>
    public static async Task<long> WarmUpAsync(GuestImage image, TlsSettings? tls = null, MigrationTransport? network = null, CancellationToken cancellation = default)
    {
        long translations = 0;
        LocalMigrationHooks? hooks = tls is null && network is null ? null : new LocalMigrationHooks
        {
            Network = network,
            ListenAt = network is null ? null : "127.0.0.1:0",
            SourceTransport = tls is null ? null : t => new TlsTransport(t, tls),
            DestinationTransport = tls is null ? null : t => new TlsTransport(t, tls),
        };
        foreach (StrategyKind strategy in StrategyPolicy.All.Where(k => StrategyPolicy.For(k).WarmUp).Order())
        {
            var machine = new VirtMachine(new MachineConfig { MemorySize = 16UL << 20 });
            machine.Load(image);
            using var source = new LocalVm("warm-up", machine, workingSetWindow: TimeSpan.FromMilliseconds(10));
            source.Start();
            await Task.Delay(30, cancellation).ConfigureAwait(false);
            (_, LocalVm? destination) = await RunAsync(source, new MigrationOptions { Strategy = strategy, LocalityPages = 4 }, hooks, cancellation).ConfigureAwait(false);
            translations += Compiled(source.Machine.Hart.TranslationStatistics) + (destination is null ? 0 : Compiled(destination.Machine.Hart.TranslationStatistics));
            destination?.Dispose();
        }

        return translations;

        static long Compiled(TranslationStatistics t) => t.Blocks + t.Promoted;
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

    /// <summary>The connections' transport instead of in-memory pipes (TCP on loopback, say).</summary>
    public MigrationTransport? Network { get; init; }

    /// <summary>Where the destination listens on <see cref="Network"/> (default <see cref="LocalMigration.Endpoint"/>).</summary>
    public string? ListenAt { get; init; }

    /// <summary>The transport the source dials with, over the in-memory one (TLS, say).</summary>
    public Func<MigrationTransport, MigrationTransport>? SourceTransport { get; init; }

    /// <summary>The transport the destination listens with, over the in-memory one.</summary>
    public Func<MigrationTransport, MigrationTransport>? DestinationTransport { get; init; }

    /// <summary>Hears of each connection the destination refused before its handler saw it (peer and reason).</summary>
    public Action<string>? OnRefused { get; init; }
}
