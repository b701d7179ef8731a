using Ferry.Cli.Bench;
using Ferry.Machine.Board;

namespace Ferry.Cli.Tests;

/// <summary>
/// QEMU's own migrations through <see cref="QemuMigration.RunAsync"/>. The guest is the unpaced
/// page dirtier over 8 MiB (idle cannot be used: QEMU 7.2 does not re-arm the timer on the
/// destination, so a guest asleep in WFI never wakes). One class, so the QEMU pairs run one at a time.
/// </summary>
public sealed class QemuMigrationTests
{
    private const long OneGigabit = 1_000_000_000;

    [QemuFact]
    public async Task Precopy_completes_and_the_guest_runs_on()
    {
        QemuRunResult r = await QemuMigration.RunAsync(Spec("precopy", "size_mib=8", TimeSpan.FromSeconds(20)), CancellationToken.None);

        Assert.True(r.Completed, r.Error);
        Assert.Null(r.Error);
        Assert.Equal("precopy", r.Strategy);
        Assert.True(r.DowntimeMs > 0, $"downtime {r.DowntimeMs}");
        Assert.True(r.TotalTimeMs >= r.DowntimeMs, $"total {r.TotalTimeMs} < downtime {r.DowntimeMs}");
        Assert.True(r.BytesOnWire > 8L << 20, $"bytes {r.BytesOnWire}");
        Assert.Null(r.NetworkFaults);
        Assert.NotNull(r.Rounds);
        Assert.NotNull(r.GuestMips);
        Assert.Contains("pass ", r.DestinationConsoleTail, StringComparison.Ordinal);
    }

    [QemuFact]
    public async Task Postcopy_completes_and_the_guest_runs_on()
    {
        QemuRunResult r = await QemuMigration.RunAsync(Spec("postcopy", "size_mib=8", TimeSpan.FromSeconds(20)), CancellationToken.None);

        Assert.True(r.Completed, r.Error);
        Assert.Null(r.Error);
        Assert.Equal("postcopy", r.Strategy);
        Assert.True(r.DowntimeMs > 0, $"downtime {r.DowntimeMs}");
        Assert.True(r.TotalTimeMs >= r.DowntimeMs, $"total {r.TotalTimeMs} < downtime {r.DowntimeMs}");
        Assert.True(r.BytesOnWire > 8L << 20, $"bytes {r.BytesOnWire}");
        Assert.NotNull(r.NetworkFaults);
        Assert.Contains("pass ", r.DestinationConsoleTail, StringComparison.Ordinal);
    }

    [QemuFact]
    public async Task Precopy_that_cannot_converge_is_cancelled_at_the_timeout()
    {
        // 64 MiB rewritten every few ms can never fit in 300 ms at 1 Gbit/s.
        QemuRunResult r = await QemuMigration.RunAsync(Spec("precopy", "size_mib=64", TimeSpan.FromSeconds(3), memoryMib: 128), CancellationToken.None);

        Assert.False(r.Completed);
        Assert.True(r.Error == "did not converge within 3s", r.Error);
        Assert.True(r.BytesOnWire > 0, $"bytes {r.BytesOnWire}");
    }

    [QemuFact]
    public async Task Cancellation_throws()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(1.5));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(
            () => QemuMigration.RunAsync(Spec("precopy", "size_mib=64", TimeSpan.FromSeconds(20), memoryMib: 128), cts.Token));
    }

    private static QemuMigrationSpec Spec(string strategy, string config, TimeSpan timeout, ulong memoryMib = 64) => new(
        Workload: "dirty",
        Image: GuestImage.Load(GuestPath("dirty")).WithConfig(GuestImage.ParseConfig(config)).Bytes.ToArray(),
        MemoryBytes: memoryMib << 20,
        Strategy: strategy,
        BandwidthBitsPerSecond: OneGigabit,
        DowntimeLimit: TimeSpan.FromMilliseconds(300),
        WarmUp: TimeSpan.FromSeconds(1),
        Timeout: timeout);

    private static string GuestPath(string name)
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Ferry.slnx")))
        {
            dir = dir.Parent;
        }

        return Path.Combine(dir?.FullName ?? throw new InvalidOperationException("repository root (Ferry.slnx) not found"), "guests", "bin", name + ".elf");
    }
}
