using Ferry.Migration.Local;
using Ferry.Migration.Metrics;
using Ferry.Migration.Protocol;
using Ferry.Migration.Strategies;
using Xunit;

namespace Ferry.Migration.Tests;

/// <summary>
/// Decisions that need a guest that really outruns the link: beside the whole suite on two
/// cores a starved guest dirtied little enough for pre-copy to converge (auto's switch: one
/// decision, not two; auto-converge: nothing to throttle), so these cases run alone
/// (<see cref="TimingSensitive"/>).
/// </summary>
[Collection(nameof(TimingSensitive))]
public sealed class AutoSwitchTests
{
    private const ulong Memory = StrategyDecisionTests.Memory;

    [Fact]
    public async Task Auto_switches_a_precopy_whose_rounds_stop_shrinking_to_hybrid()
    {
        // Uncapped: the link's rate is unknown at the start, so auto tries pre-copy; the guest
        // rewrites its 4 MiB faster than rounds can send it, and a 1 ms pause never fits.
        (MigrationReport r, LocalVm source, LocalVm destination) = await Harness.MigrateAsync("dirty", "size_mib=4,rate=0", Memory, 5_000_000, StrategyDecisionTests.FarStop,
            new MigrationOptions { Strategy = StrategyKind.Auto, DowntimeLimit = TimeSpan.FromMilliseconds(1) });
        using (source)
        using (destination)
        {
            Assert.True(r.Outcome == MigrationOutcome.Completed, r.Error);
            Assert.True(r.Decisions.Count == 2,
                $"decisions: {string.Join("; ", r.Decisions.Select(d => $"{d.Choice} at round {d.Round}: {d.Reason}"))}; paused at instruction {r.Guest.InstructionsAtPause:N0}; rounds: "
                + string.Join("; ", r.Rounds.Select(x => $"{x.Round}: {x.Pages} pages in {x.DurationMs:0.0} ms, {x.DirtiedPages} dirtied")));
            Assert.Equal(StrategyKind.PreCopy, r.Decisions[0].Choice);
            Assert.Null(r.Decisions[0].LinkPagesPerSecond);
            Assert.Equal(StrategyKind.Hybrid, r.Decisions[1].Choice);
            Assert.Equal(r.PrecopyRounds - 1, r.Decisions[1].Round);
            Assert.True(r.PrecopyRounds >= 2 && r.PrecopyRounds < 30, $"{r.PrecopyRounds} rounds: it stopped as soon as they stopped shrinking");
            Assert.True(r.Rounds[^1].DirtiedPages >= 0.9 * r.Rounds[^2].DirtiedPages);
            Assert.True(r.PagesArrived.Fault + r.PagesArrived.Prefetch + r.PagesArrived.Push > 0, "the dirty rest came after the resume, not in a stop-and-copy");
        }
    }

    [Fact]
    public async Task Precopy_with_auto_converge_throttles_a_guest_that_outruns_the_link_until_it_converges()
    {
        var options = new MigrationOptions { Strategy = StrategyKind.PreCopy, BandwidthBitsPerSecond = 400_000_000, DowntimeLimit = TimeSpan.FromMilliseconds(20), AutoConverge = true };
        // verify rewrites its 8 MiB pass after pass, in proportion to its speed: about three times
        // what the link carries. (A guest that dirties every page with one store per pass, as
        // dirty does, outruns any throttle: delta pages are its aid.)
        (MigrationReport r, LocalVm source, LocalVm destination) = await Harness.MigrateAsync("verify", "size_mib=8", Memory, 30_000_000, StrategyDecisionTests.FarStop, options);
        using (source)
        using (destination)
        {
            Assert.True(r.Outcome == MigrationOutcome.Completed, r.Error);
            Assert.NotEmpty(r.Throttle);
            Assert.Equal(20, r.Throttle[0].Percent, 6);
            Assert.True(r.Throttle.Zip(r.Throttle.Skip(1)).All(p => p.Second.Percent > p.First.Percent && p.Second.Round > p.First.Round), "the throttle only rises, a step per round");
            Assert.True(r.Rounds[^1].ExpectedDowntimeMs <= 20, $"it converged: the last round left {r.Rounds[^1].ExpectedDowntimeMs:0.0} ms ({r.PrecopyRounds} rounds, throttle {r.Throttle[^1].Percent} %)");
            Assert.Equal(0, source.Machine.Throttle); // lifted with the pause
            // The VM runs in bursts between its sleeps, so the rate is taken over all the rounds at the last step's throttle.
            // Before: the fastest round without a throttle (a loaded machine may starve the guest in any one round).
            double before = r.Rounds.Take(r.Throttle[0].Round + 1).Max(x => x.DirtyPagesPerSecond);
            RoundReport[] throttled = [.. r.Rounds.Skip(r.Throttle[^1].Round + 1)];
            double after = throttled.Sum(x => x.DirtiedPages) / (throttled.Sum(x => x.DurationMs) / 1000);
            Assert.True(after < before / 2, $"the throttle slowed the dirtying: {before:0} pages/s before its first step, {after:0} at {r.Throttle[^1].Percent} %");
        }
    }
    [Fact]
    public async Task Auto_watches_window_after_window_and_goes_hybrid_when_a_later_one_sees_the_guest_dirty()
    {
        // In real time, every 200 ms the guest writes 4,096 pages at once and sleeps between:
        // the watch's window (about 17 ms for 16 MiB at 400 Mbit/s) mostly sees a quiet guest.
        // One window used to decide pre-copy then, and only pre-copy's shrink check, after round
        // 0 and round 1, turned it hybrid. Now the watch goes on through round 0 (about 20
        // windows here) and a window with a beat in it decides, before any round.
        var machine = new Ferry.Machine.Board.VirtMachine(new Ferry.Machine.Board.MachineConfig { MemorySize = 64UL << 20, Icount = false, IdleSleep = true });
        machine.Load(Ferry.Machine.Board.GuestImage.Load(Harness.GuestPath("idle")).WithConfig(Ferry.Machine.Board.GuestImage.ParseConfig("interval_ms=200,pages=4096")));
        using var source = new LocalVm("beats", machine, StrategyDecisionTests.FarStop, TimeSpan.FromMilliseconds(50));
        source.Start();
        while (!System.Text.Encoding.ASCII.GetString(machine.Console.Read(0).Bytes).Contains("beat 2", StringComparison.Ordinal) && source.Runner.IsRunning)
        {
            await Task.Delay(5); // two beats: every page the beats write is populated
        }

        (MigrationReport r, LocalVm? destination) = await LocalMigration.RunAsync(source,
            new MigrationOptions { Strategy = StrategyKind.Auto, BandwidthBitsPerSecond = 400_000_000 }).WaitAsync(TimeSpan.FromMinutes(2));
        using (destination)
        {
            Assert.True(r.Outcome == MigrationOutcome.Completed, r.Error);
            string decisions = string.Join("; ", r.Decisions.Select(d => $"{d.Choice} at {d.AtMs:0} ms, round {d.Round}: {d.Reason}"));
            StrategyDecision d = Assert.Single(r.Decisions);
            Assert.True(d.Choice == StrategyKind.Hybrid && r.PrecopyRounds == 0, $"{r.PrecopyRounds} pre-copy rounds; decisions: {decisions}");
        }
    }
}
