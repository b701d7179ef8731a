using Ferry.Cli.Bench;
using Ferry.Cli.Client;
using Ferry.Machine.Board;
using Ferry.Machine.Devices.Virtio;
using Ferry.Migration;
using Ferry.Migration.Local;
using Ferry.Migration.Metrics;
using Ferry.Migration.Protocol;

namespace Ferry.Cli.Tests;

/// <summary>A fact that needs QEMU and a host network for VMs (TAP devices on the ferry0 bridge): skipped, with the reason, where there is none.</summary>
public sealed class NetworkFactAttribute : FactAttribute
{
    public NetworkFactAttribute() => Skip = new QemuFactAttribute().Skip ?? HostBridge.Unavailable();
}

/// <summary>
/// The kvserver guest migrated by QEMU while <see cref="KvClient"/> talks to it over the bridge:
/// the client's TCP connections survive the move (none breaks, none is reopened, every request is
/// answered correctly, and every connection is answered after the move); and the same for Ferry's
/// own VMs (virtio-net on a TAP, the destination on a TAP of its own on the same bridge), moved
/// in this process by each strategy.
/// </summary>
public sealed class KvserverMigrationTests
{
    private static QemuMigrationSpec Spec(string strategy, NetworkGuest guest)
    {
        LinuxBootFiles files = GuestCatalog.ResolveLinux(null, null, $"{LinuxBoot.DefaultCommandLine} {guest.KernelIpArgument}", null, "workload=kvserver");
        return new QemuMigrationSpec("linux-kvserver", [], 64UL << 20, strategy, 1_000_000_000, TimeSpan.FromMilliseconds(20), TimeSpan.FromSeconds(1.5), TimeSpan.FromSeconds(30))
        {
            Linux = new QemuLinuxGuest(LinuxBoot.ReadKernelImage(files.Kernel, files.KernelName), files.Initrd!, files.CommandLine),
        };
    }

    [NetworkFact]
    public Task Client_connections_survive_a_QEMU_precopy_migration() => SurvivesAsync("precopy", NetworkGuest.For(21));

    [NetworkFact]
    public Task Client_connections_survive_a_QEMU_postcopy_migration() => SurvivesAsync("postcopy", NetworkGuest.For(22));

    // Addresses of their own (not the bench's 10.77.0.2): other networked tests may be on the bridge at the same time.
    private static async Task SurvivesAsync(string strategy, NetworkGuest guest)
    {
        await HostBridge.EnsureAsync(CancellationToken.None);
        (QemuRunResult q, KvClientResult? client) = await BenchClient.RunQemuAsync(Spec(strategy, guest), guest, CancellationToken.None);

        Assert.True(q.Completed, q.Error + " " + q.DestinationConsoleTail);
        Assert.NotNull(client);
        Assert.NotNull(q.Marks);
        Assert.Equal(0, client.BrokenConnections);
        Assert.True(client.Failed == 0, $"{client.Failed} failed: {client.FirstError}");
        double resumed = client.MsSinceStart(q.Marks.Resumed), completed = client.MsSinceStart(q.Marks.Completed);
        Assert.Contains(client.Samples, s => s.SentMs < client.MsSinceStart(q.Marks.Started));   // it was talking before the move
        for (int c = 0; c < BenchClient.Connections; c++)
        {
            // The same connection, answered by the destination (sent after the move completed).
            Assert.Contains(client.Samples, s => s.Connection == c && s.SentMs > completed + 100 && s.Answered);
        }

        // The outage the client saw covers the pause (no reply can come while the guest is stopped).
        if (q.Marks.Stopped is { } stopped)
        {
            Assert.True(client.LongestGapWithin(client.MsSinceStart(stopped), resumed).Ms >= resumed - client.MsSinceStart(stopped) - 1);
        }
    }

    [NetworkFact]
    public Task Client_connections_survive_a_Ferry_precopy_migration() => FerrySurvivesAsync(StrategyKind.PreCopy, NetworkGuest.For(23));

    [NetworkFact]
    public Task Client_connections_survive_a_Ferry_postcopy_migration() => FerrySurvivesAsync(StrategyKind.PostCopy, NetworkGuest.For(24));

    [NetworkFact]
    public Task Client_connections_survive_a_Ferry_hybrid_migration() => FerrySurvivesAsync(StrategyKind.Hybrid, NetworkGuest.For(25));

    private static async Task FerrySurvivesAsync(StrategyKind strategy, NetworkGuest guest)
    {
        await HostBridge.EnsureAsync(CancellationToken.None);
        LinuxBootFiles files = GuestCatalog.ResolveLinux(null, null, $"{LinuxBoot.DefaultCommandLine} {guest.KernelIpArgument}", null, "workload=kvserver");
        var devices = new MachineDevices { Net = NetBackendOptions.Parse($"tap,mac={guest.Mac}") };
        var machine = new VirtMachine(new MachineConfig { MemorySize = 64UL << 20 }, devices: devices);
        LinuxBoot.Load(machine, files);
        var source = new LocalVm($"kvserver-{strategy}", machine, workingSetWindow: TimeSpan.FromMilliseconds(100));
        LocalVm? destination = null;
        using var client = new BenchClient(guest);
        try
        {
            source.Start();
            var boot = System.Diagnostics.Stopwatch.StartNew();
            while (!System.Text.Encoding.ASCII.GetString(machine.Console.Read(0).Bytes).Contains(BenchClient.ListeningLine, StringComparison.Ordinal))
            {
                Assert.True(boot.Elapsed < TimeSpan.FromSeconds(90) && source.Runner.IsRunning, "the guest's kvserver did not start: "
                    + System.Text.Encoding.ASCII.GetString(machine.Console.Read(0).Bytes));
                await Task.Delay(50);
            }

            await client.StartAsync(CancellationToken.None);
            await Task.Delay(TimeSpan.FromSeconds(1.5));
            (MigrationReport report, destination) = await LocalMigration.RunAsync(source,
                new MigrationOptions { Strategy = strategy, DowntimeLimit = TimeSpan.FromMilliseconds(20), MaxRounds = 8 });
            Assert.True(report.Outcome == MigrationOutcome.Completed, report.Error);
            if (strategy != StrategyKind.PreCopy)
            {
                // The card's posted receive buffers (and the rings) were still at the source: sent ahead of the faults.
                Assert.True(report.Switchover!.DevicePages > 0, "no device page was sent ahead");
            }

            DateTimeOffset completed = report.StartedAt.AddMilliseconds(report.TotalTimeMs);
            await Task.Delay(BenchClient.After);
            KvClientResult result = (await client.StopAsync())!;

            // The host announced the VM at once; the guest did too (post-copy and hybrid: once its memory was all there).
            VirtioNet card = destination!.Machine.Virtio.Select(t => t.Device).OfType<VirtioNet>().Single();
            Assert.True(card.SelfAnnouncements >= 1, "the destination's card sent no RARP");
            Assert.True(card.AnnouncementsAcknowledged >= 1, "the guest never announced itself at the destination");
            Assert.Equal(0, result.BrokenConnections);
            Assert.True(result.Failed == 0, $"{result.Failed} failed: {result.FirstError}; the longest gap began {result.LongestGap.FromMs - result.MsSinceStart(report.StartedAt):0} ms "
                + $"after the migration's start (total {report.TotalTimeMs:0} ms, downtime {report.DowntimeMs:0.0} ms); the bridge: {await BridgeStateAsync()}; "
                + $"the destination's console: {System.Text.Encoding.ASCII.GetString(destination!.Machine.Console.Read(0).Bytes)}");
            Assert.Contains(result.Samples, s => s.SentMs < result.MsSinceStart(report.StartedAt));
            for (int c = 0; c < BenchClient.Connections; c++)
            {
                Assert.Contains(result.Samples, s => s.Connection == c && s.SentMs > result.MsSinceStart(completed) + 100 && s.Answered);
            }
        }
        finally
        {
            await client.StopAsync();
            source.Dispose();
            destination?.Dispose();
        }
    }

    private static async Task<string> BridgeStateAsync()
    {
        try
        {
            return await NetnsLink.RunAsync(CancellationToken.None, "bridge", "fdb", "show", "br", HostBridge.Name) + " | "
                + await NetnsLink.RunAsync(CancellationToken.None, "ip", "-o", "link", "show", "master", HostBridge.Name);
        }
        catch (Exception e) when (e is CliException or System.ComponentModel.Win32Exception)
        {
            return e.Message;
        }
    }
}
