using Ferry.Machine.Board;
using Ferry.Machine.State;
using Ferry.Migration.Local;
using Ferry.Migration.Metrics;
using Ferry.Migration.Protocol;
using Xunit;

namespace Ferry.Migration.Tests;

/// <summary>
/// A Linux VM (guests/linux: Linux 6.1 and its initramfs on Debian's OpenSBI) moves live with
/// nothing lost: in icount mode, migrated mid-run by each strategy, it reaches the same state
/// digest and console output as an unmigrated run at the same instruction count.
/// </summary>
public sealed class LinuxMigrationTests
{
    private const ulong Memory = 64UL << 20;
    private const string CommandLine = LinuxBoot.DefaultCommandLine + " ferry.workload=kvstore ferry.table_mib=8";

    private static VirtMachine Boot()
    {
        string root = Path.GetDirectoryName(Path.GetDirectoryName(Harness.GuestPath("hello"))!)!; // guests/
        var machine = new VirtMachine(new MachineConfig { MemorySize = Memory, Icount = true, IdleSleep = false });
        LinuxBoot.Load(machine, new LinuxBootFiles
        {
            Firmware = File.ReadAllBytes(Path.Combine(root, "firmware", "fw_dynamic.bin")),
            Kernel = File.ReadAllBytes(Path.Combine(root, "linux", "bin", "Image.gz")),
            Initrd = File.ReadAllBytes(Path.Combine(root, "linux", "bin", "initramfs.cpio.gz")),
            CommandLine = CommandLine,
        });
        return machine;
    }

    private static readonly Lazy<(string Digest, byte[] Console)> Reference = new(() =>
    {
        using VirtMachine m = Boot();
        m.Run(StopAt);
        return (StateDigest.Compute(m), m.Console.Read(0).Bytes);
    });

    // Past `ferry-init: ready` (about 19 M instructions), inside kvstore's table fill and first operations.
    private const ulong MigrateAfter = 30_000_000;
    private const ulong StopAt = 90_000_000;

    [Theory]
    [InlineData(StrategyKind.PreCopy)]
    [InlineData(StrategyKind.PostCopy)]
    [InlineData(StrategyKind.Hybrid)]
    public async Task A_linux_vm_migrated_mid_run_reaches_the_unmigrated_digest_and_console(StrategyKind strategy)
    {
        (string digest, byte[] console) = Reference.Value;
        Assert.Contains("ferry-init: ready", System.Text.Encoding.ASCII.GetString(console));

        var source = new LocalVm("linux", Boot(), StopAt, TimeSpan.FromMilliseconds(50));
        source.Start();
        while (source.Machine.Hart.InstructionsRetired < MigrateAfter && source.Runner.IsRunning)
        {
            await Task.Delay(2);
        }

        (MigrationReport report, LocalVm? destination) = await LocalMigration.RunAsync(source,
            new MigrationOptions { Strategy = strategy, DowntimeLimit = TimeSpan.FromMilliseconds(50), MaxRounds = 5 });
        using (source)
        using (destination)
        {
            Assert.True(report.Outcome == "completed", report.Error);
            Assert.Equal("destination", report.VmLocation);
            Assert.True(report.Guest.InstructionsAtPause > 20_000_000, $"paused at {report.Guest.InstructionsAtPause}, before Linux was up");
            RunOutcome outcome = await destination!.Runner.WaitAsync().WaitAsync(TimeSpan.FromSeconds(120));
            Assert.Equal(RunOutcome.InstructionLimit, outcome);
            Assert.Equal(StopAt, destination.Machine.Hart.InstructionsRetired);
            Assert.Equal(digest, StateDigest.Compute(destination.Machine));

            // The console: the source's part, then the destination's, exactly the unmigrated run's.
            (long offset, byte[] tail) = destination.Machine.Console.Read(0);
            byte[] head = source.Machine.Console.Read(0).Bytes[..(int)offset];
            Assert.Equal(console, head.Concat(tail).ToArray());
        }
    }
}
