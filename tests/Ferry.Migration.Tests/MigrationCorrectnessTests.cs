using Ferry.Machine.Board;
using Ferry.Machine.State;
using Ferry.Migration.Metrics;
using Ferry.Migration.Protocol;
using Ferry.Migration.Local;
using Xunit;

namespace Ferry.Migration.Tests;

public class MigrationCorrectnessTests
{
    public static TheoryData<StrategyKind, string, string, string> Cases()
    {
        var data = new TheoryData<StrategyKind, string, string, string>();
        // Every strategy (a new StrategyKind value is covered the moment it exists).
        foreach (StrategyKind s in Enum.GetValues<StrategyKind>())
        {
            data.Add(s, "verify", "size_mib=8", "");
            data.Add(s, "kvstore", "table_mib=24,report_every=20000", "");
            data.Add(s, "dirty", "size_mib=8,rate=0", "");
        }

        // The options that change what crosses when: live passes first, an adaptive window.
        data.Add(StrategyKind.PostCopy, "kvstore", "table_mib=24,report_every=20000", "live-pass");
        data.Add(StrategyKind.Hybrid, "verify", "size_mib=8", "live-pass");
        data.Add(StrategyKind.Hybrid, "verify", "size_mib=8", "adaptive");
        data.Add(StrategyKind.Hybrid, "kvstore", "table_mib=24,report_every=20000", "adaptive");

        // Auto on a capped link: it decides from the link's rate (hybrid at once for these guests).
        data.Add(StrategyKind.Auto, "kvstore", "table_mib=24,report_every=20000", "capped");
        data.Add(StrategyKind.Auto, "dirty", "size_mib=8,rate=0", "capped");

        // Auto-converge throttles the guest; what it computes stays the same.
        data.Add(StrategyKind.PreCopy, "dirty", "size_mib=8,rate=0", "auto-converge");

        // Pages sent again as deltas against what the destination holds.
        data.Add(StrategyKind.PreCopy, "kvstore", "table_mib=24,report_every=20000", "delta");
        data.Add(StrategyKind.Hybrid, "kvstore", "table_mib=24,report_every=20000", "delta");
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Migrated_vm_reaches_the_unmigrated_digest_and_console(StrategyKind strategy, string guest, string config, string variant)
    {
        const ulong memory = 64UL << 20;
        const ulong migrateAfter = 20_000_000;
        // Deltas need pages sent again: the guest must still run (and dirty) while rounds go, at the
        // translator's speed too, and the first round must take long enough for a guest starved by
        // the rest of the suite to dirty pages in it (uncapped, a CI run once sent none again).
        ulong stopAt = variant == "delta" ? 1_500_000_000UL : 60_000_000UL;
        (string digest, byte[] console) = Harness.Reference(guest, config, memory, stopAt);

        var options = new MigrationOptions
        {
            Strategy = strategy,
            DowntimeLimit = TimeSpan.FromMilliseconds(50),
            MaxRounds = 5,
            LocalityAdaptive = variant == "adaptive",
            BandwidthBitsPerSecond = variant is "capped" or "auto-converge" or "delta" ? 400_000_000 : 0,
            AutoConverge = variant == "auto-converge",
            DeltaCacheBytes = variant == "delta" ? MigrationOptions.DefaultDeltaCacheBytes : 0,
            LivePasses = variant is "live-pass" || (variant == "delta" && strategy == StrategyKind.Hybrid) ? 1 : 0,
        };
        (MigrationReport report, LocalVm source, LocalVm destination) = await Harness.MigrateAsync(guest, config, memory, migrateAfter, stopAt, options);
        using (source)
        using (destination)
        {
            Assert.True(report.Outcome == MigrationOutcome.Completed, report.Error);
            Assert.Equal(VmLocation.Destination, report.VmLocation);
            Assert.Equal(options.LivePasses, report.Options.LivePasses);
            if (variant == "delta" && strategy == StrategyKind.PreCopy)
            {
                // (Hybrid resends after its live pass mostly go by the push, which sends whole pages.)
                Assert.True(report.Pages.Delta > 0, $"kvstore's puts change a few bytes of a page: some of the {report.Pages.Resent} resent pages went as deltas");
            }
            Assert.Equal(variant == "adaptive", report.Options.LocalityAdaptive);
            Assert.Equal(strategy == StrategyKind.Auto, report.Decisions.Count > 0);
            Assert.NotNull(report.Runtime?.SourcePause);   // the runtime's stops, measured at both ends
            Assert.NotNull(report.Runtime.Destination);

            // The guest's speed in the post-copy phase, from the counts at its ends: a phase of any
            // length has one (the host's 10-50 ms samples miss short ones); none without absent pages.
            if (report.PagesArrived.Fault + report.PagesArrived.Prefetch + report.PagesArrived.Push > 0)
            {
                Assert.True(report.Guest.IpsPostCopy is >= 0, $"post-copy phase of {report.TimeToFullyResidentMs} ms, speed {report.Guest.IpsPostCopy}");
            }
            else
            {
                Assert.Null(report.Guest.IpsPostCopy);
            }
            RunOutcome outcome = await destination.Runner.WaitAsync().WaitAsync(TimeSpan.FromSeconds(60));
            Assert.Equal(RunOutcome.InstructionLimit, outcome);
            Assert.Equal(stopAt, destination.Machine.Hart.InstructionsRetired);
            Assert.Equal(digest, StateDigest.Compute(destination.Machine));

            // Console: the source's part, then the destination's, with nothing lost or repeated.
            (long offset, byte[] tail) = destination.Machine.Console.Read(0);
            byte[] head = source.Machine.Console.Read(0).Bytes[..(int)offset];
            Assert.Equal(console, head.Concat(tail).ToArray());
            Assert.DoesNotContain("CORRUPT", System.Text.Encoding.ASCII.GetString(console));
        }
    }
}
