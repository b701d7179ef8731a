using Ferry.Machine.Board;
using Ferry.Machine.State;
using Ferry.Migration.Local;
using Ferry.Migration.Metrics;
using Ferry.Migration.Protocol;
using Xunit;

namespace Ferry.Migration.Tests;

/// <summary>
/// Block I/O survives a live migration: a Linux VM running the `disk` workload (each pass checks
/// the previous pass's pattern, writes its own, flushes, re-reads and checksums), on raw blocks of
/// /dev/vda or on a file of an ext2 file system on it, is migrated mid-run by each strategy, with
/// its disk on a path both sides open (as hosts sharing storage), and reaches the same state digest
/// and console output as an unmigrated run with its own copy of the disk at the same instruction
/// count, and the two disk files hold the same bytes (for ext2: a file system e2fsck finds clean,
/// holding the file).
/// </summary>
public sealed class DiskMigrationTests
{
    private const ulong Memory = 64UL << 20;
    private const string CommandLine = LinuxBoot.DefaultCommandLine + " ferry.workload=disk ferry.disk_mib=1";
    private const int DiskBytes = 4 << 20;

    // Past `ferry-init: ready` (about 23 M instructions), inside the disk workload's first passes.
    private const ulong MigrateAfter = 35_000_000;
    private const ulong StopAt = 75_000_000;

    private static string CommandLineFor(bool ext2) => CommandLine + (ext2 ? " ferry.disk_file=1" : "");

    /// <summary>A fresh ext2 file system, the same bytes every time (fixed UUID, hash seed and time), made once.</summary>
    private static readonly Lazy<byte[]> Ext2Image = new(() =>
    {
        string path = Path.Combine(Path.GetTempPath(), $"ferry-ext2-{Guid.NewGuid():n}.img");
        try
        {
            File.WriteAllBytes(path, new byte[DiskBytes]);
            (int code, string output) = Run("mke2fs", "-q", "-t", "ext2", "-F", "-b", "1024", "-U", "5e2f3d1c-0000-4000-8000-00000000fe11",
                "-E", "hash_seed=5e2f3d1c-0000-4000-8000-00000000fe12", path);
            Assert.True(code == 0, "mke2fs (e2fsprogs) failed: " + output);
            return File.ReadAllBytes(path);
        }
        finally
        {
            File.Delete(path);
        }
    });

    private static (int Code, string Output) Run(string file, params string[] args)
    {
        var psi = new System.Diagnostics.ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }

        psi.Environment["E2FSPROGS_FAKE_TIME"] = "1672531200";
        using var p = System.Diagnostics.Process.Start(psi)!;
        string output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, output);
    }

    private static string NewDisk(bool ext2)
    {
        string path = Path.Combine(Path.GetTempPath(), $"ferry-disk-{Guid.NewGuid():n}.img");
        var content = new byte[DiskBytes];
        if (ext2)
        {
            Ext2Image.Value.CopyTo(content, 0);
        }
        else
        {
            new Random(5).NextBytes(content); // what the guest's first pass overwrites
        }

        File.WriteAllBytes(path, content);
        return path;
    }

    private static VirtMachine Boot(string disk, bool ext2) => Harness.BootLinux(CommandLineFor(ext2), Memory, new MachineDevices { Disk = disk });

    private static readonly Lazy<(string Digest, byte[] Console, byte[] Disk)>[] Reference = [.. new[] { false, true }.Select(ext2 => new Lazy<(string, byte[], byte[])>(() =>
    {
        string disk = NewDisk(ext2);
        try
        {
            using (VirtMachine m = Boot(disk, ext2))
            {
                m.Run(StopAt);
                return (StateDigest.Compute(m), m.Console.Read(0).Bytes, File.ReadAllBytes(disk));
            }
        }
        finally
        {
            File.Delete(disk);
        }
    }))];

    [Theory]
    [InlineData(StrategyKind.PreCopy, false)]
    [InlineData(StrategyKind.PostCopy, false)]
    [InlineData(StrategyKind.Hybrid, false)]
    [InlineData(StrategyKind.PreCopy, true)]
    [InlineData(StrategyKind.PostCopy, true)]
    [InlineData(StrategyKind.Hybrid, true)]
    public async Task Block_io_survives_migration_with_the_unmigrated_digest_console_and_disk_bytes(StrategyKind strategy, bool ext2)
    {
        (string digest, byte[] console, byte[] diskBytes) = Reference[ext2 ? 1 : 0].Value;
        string text = System.Text.Encoding.ASCII.GetString(console);
        Assert.Contains("disk pass 2 sum", text, StringComparison.Ordinal); // the reference wrote and checked the disk across passes
        Assert.DoesNotContain("CORRUPT", text, StringComparison.Ordinal);
        if (ext2)
        {
            Assert.Contains("disk: ext2 file /mnt/ferry.dat", text, StringComparison.Ordinal);
        }

        string disk = NewDisk(ext2);
        try
        {
            (MigrationReport report, LocalVm source, LocalVm? destination) = await Harness.RunAndMigrateAsync("linux-disk", Boot(disk, ext2), MigrateAfter, StopAt, strategy);
            using (source)
            using (destination)
            {
                Assert.True(report.Outcome == MigrationOutcome.Completed, report.Error);
                Assert.Equal(VmLocation.Destination, report.VmLocation);
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
            if (ext2)
            {
                // The file system the guest left (it synced after each pass) is whole and has the file.
                (int fsck, string fsckOutput) = Run("e2fsck", "-fn", disk);
                Assert.True(fsck == 0, "e2fsck finds the migrated VM's file system damaged: " + fsckOutput);
                (_, string stat) = Run("debugfs", "-R", "stat /ferry.dat", disk);
                Assert.Contains("Size: 1048576", stat, StringComparison.Ordinal);
            }
        }
        finally
        {
            File.Delete(disk);
        }
    }
}
