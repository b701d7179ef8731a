using Ferry.Cli.Bench;
using Ferry.Cli.Client;
using Ferry.Machine.Board;

namespace Ferry.Cli.Tests;

/// <summary>A fact that needs QEMU and a host network for VMs (TAP devices on the ferry0 bridge): skipped, with the reason, where there is none.</summary>
public sealed class NetworkFactAttribute : FactAttribute
{
    public NetworkFactAttribute() => Skip = new QemuFactAttribute().Skip ?? HostBridge.Unavailable();
}

/// <summary>
/// The kvserver guest migrated by QEMU while <see cref="KvClient"/> talks to it over the bridge:
/// the client's TCP connections survive the move (none breaks, none is reopened, every request is
/// answered correctly, and every connection is answered after the move). Ferry's own VMs get the
/// same test once they have a network card.
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
}
