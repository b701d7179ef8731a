using Ferry.Migration.Local;
using Ferry.Migration.Metrics;
using Ferry.Migration.Protocol;
using Ferry.Migration.Strategies;
using Xunit;

namespace Ferry.Migration.Tests;

/// <summary>
/// Auto's switch from pre-copy to hybrid needs a guest that really outruns the rounds: beside
/// the whole suite on two cores a starved guest dirtied little enough for pre-copy to converge
/// (one decision, not two), so the case runs alone (<see cref="TimingSensitive"/>).
/// </summary>
[Collection(nameof(TimingSensitive))]
public sealed class AutoSwitchTests
{
    private const ulong Memory = 32UL << 20;

    [Fact]
    public async Task Auto_switches_a_precopy_whose_rounds_stop_shrinking_to_hybrid()
    {
        // Uncapped: the link's rate is unknown at the start, so auto tries pre-copy; the guest
        // rewrites its 4 MiB faster than rounds can send it, and a 1 ms pause never fits.
        (MigrationReport r, LocalVm source, LocalVm destination) = await Harness.MigrateAsync("dirty", "size_mib=4,rate=0", Memory, 5_000_000, 4_000_000_000,
            new MigrationOptions { Strategy = StrategyKind.Auto, DowntimeLimit = TimeSpan.FromMilliseconds(1) });
        using (source)
        using (destination)
        {
            Assert.True(r.Outcome == MigrationOutcome.Completed, r.Error);
            Assert.Equal(2, r.Decisions.Count);
            Assert.Equal(StrategyKind.PreCopy, r.Decisions[0].Choice);
            Assert.Null(r.Decisions[0].LinkPagesPerSecond);
            Assert.Equal(StrategyKind.Hybrid, r.Decisions[1].Choice);
            Assert.Equal(r.PrecopyRounds - 1, r.Decisions[1].Round);
            Assert.True(r.PrecopyRounds >= 2 && r.PrecopyRounds < 30, $"{r.PrecopyRounds} rounds: it stopped as soon as they stopped shrinking");
            Assert.True(r.Rounds[^1].DirtiedPages >= 0.9 * r.Rounds[^2].DirtiedPages);
            Assert.True(r.PagesArrived.Fault + r.PagesArrived.Prefetch + r.PagesArrived.Push > 0, "the dirty rest came after the resume, not in a stop-and-copy");
        }
    }
}
