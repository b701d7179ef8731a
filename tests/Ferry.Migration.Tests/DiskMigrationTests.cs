using Ferry.Machine.Board;
using Ferry.Machine.State;
using Ferry.Migration.Local;
using Ferry.Migration.Metrics;
using Ferry.Migration.Protocol;
using Xunit;

namespace Ferry.Migration.Tests;

/// <summary>
/// Block I/O survives a live migration: a Linux VM running the `disk` workload (each pass checks
/// the previous pass's pattern on /dev/vda, writes its own, flushes, re-reads and checksums) is
/// migrated mid-run by each strategy, with its disk on a path both sides open (as hosts sharing
/// storage), and reaches the same state digest and console output as an unmigrated run with its
/// own copy of the disk at the same instruction count, and the two disk files hold the same bytes.
/// </summary>
public sealed class DiskMigrationTests
{
    private const ulong Memory = 64UL << 20;
    private const string CommandLine = LinuxBoot.DefaultCommandLine + " ferry.workload=disk ferry.disk_mib=1";
    private const int DiskBytes = 4 << 20;

    // Past `ferry-init: ready` (about 23 M instructions), inside the disk workload's first passes.
    private const ulong MigrateAfter = 35_000_000;
    private const ulong StopAt = 75_000_000;

    private static string NewDisk()
    {
        string path = Path.Combine(Path.GetTempPath(), $"ferry-disk-{Guid.NewGuid():n}.img");
        var content = new byte[DiskBytes];
        new Random(5).NextBytes(content); // what the guest's first pass overwrites
        File.WriteAllBytes(path, content);
        return path;
    }

    private static VirtMachine Boot(string disk) => Harness.BootLinux(CommandLine, Memory, new MachineDevices { Disk = disk });

    private static readonly Lazy<(string Digest, byte[] Console, byte[] Disk)> Reference = new(() =>
    {
        string disk = NewDisk();
        try
        {
            using (VirtMachine m = Boot(disk))
            {
                m.Run(StopAt);
                return (StateDigest.Compute(m), m.Console.Read(0).Bytes, File.ReadAllBytes(disk));
            }
        }
        finally
        {
            File.Delete(disk);
        }
    });

    [Theory]
    [InlineData(StrategyKind.PreCopy)]
    [InlineData(StrategyKind.PostCopy)]
    [InlineData(StrategyKind.Hybrid)]
    public async Task Block_io_survives_migration_with_the_unmigrated_digest_console_and_disk_bytes(StrategyKind strategy)
    {
        (string digest, byte[] console, byte[] diskBytes) = Reference.Value;
        string text = System.Text.Encoding.ASCII.GetString(console);
        Assert.Contains("disk pass 2 sum", text, StringComparison.Ordinal); // the reference wrote and checked the disk across passes
        Assert.DoesNotContain("CORRUPT", text, StringComparison.Ordinal);

        string disk = NewDisk();
        try
        {
            (MigrationReport report, LocalVm source, LocalVm? destination) = await Harness.RunAndMigrateAsync("linux-disk", Boot(disk), MigrateAfter, StopAt, strategy);
            using (source)
            using (destination)
            {
                Assert.True(report.Outcome == "completed", report.Error);
                Assert.Equal("destination", report.VmLocation);
                Assert.True(report.Guest.InstructionsAtPause > 24_000_000, $"paused at {report.Guest.InstructionsAtPause}, before the workload ran");
                Assert.Equal(disk, destination!.Machine.Devices.Disk);
                RunOutcome outcome = await destination.Runner.WaitAsync().WaitAsync(TimeSpan.FromSeconds(300));
                Assert.Equal(RunOutcome.InstructionLimit, outcome);
                Assert.Equal(StopAt, destination.Machine.Hart.InstructionsRetired);

                (long offset, byte[] tail) = destination.Machine.Console.Read(0);
                byte[] head = source.Machine.Console.Read(0).Bytes[..(int)offset];
                Assert.Equal(text, System.Text.Encoding.ASCII.GetString([.. head, .. tail]));
                Assert.Equal(digest, StateDigest.Compute(destination.Machine));
            }

            Assert.True(diskBytes.AsSpan().SequenceEqual(File.ReadAllBytes(disk)), "the migrated VM's disk differs from the unmigrated one's");
        }
        finally
        {
            File.Delete(disk);
        }
    }
}
