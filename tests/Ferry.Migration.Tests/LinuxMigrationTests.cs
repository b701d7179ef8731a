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

    private static VirtMachine Boot() => Harness.BootLinux(CommandLine, Memory);

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

        (MigrationReport report, LocalVm source, LocalVm? destination) = await Harness.RunAndMigrateAsync("linux", Boot(), MigrateAfter, StopAt, strategy);
        using (source)
        using (destination)
        {
            Assert.True(report.Outcome == MigrationOutcome.Completed, report.Error);
            Assert.Equal(VmLocation.Destination, report.VmLocation);
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
