using Ferry.Machine.State;
using Ferry.Migration.Local;
using Ferry.Migration.Metrics;
using Ferry.Migration.Protocol;
using Ferry.Migration.Strategies;
using Ferry.Migration.Transport;
using Xunit;

namespace Ferry.Migration.Tests;

/// <summary>
/// What each strategy decides, checked on real migrations over in-memory connections: what is
/// sent while the VM runs, in the pause and after; how pages arrive; and what happens to the
/// VM when the migration fails at each stage.
/// </summary>
public class StrategyDecisionTests
{
    internal const ulong Memory = 32UL << 20;

    /// <summary>
    /// Where these tests' guests stop: far enough that they still run, dirty and fault when the
    /// move ends. A translated guest retires over a billion instructions a second, and one that
    /// halts during pre-copy dirties nothing more (its rounds converge); the destination is not
    /// run to it.
    /// </summary>
    internal const ulong FarStop = 40_000_000_000;

    [Fact]
    public async Task Precopy_on_a_quiet_guest_converges_and_resumes_with_every_page_present()
    {
        (MigrationReport r, LocalVm source, LocalVm destination) = await Harness.MigrateAsync("idle", "interval_ms=1,pages=4", Memory, 200_000, 4_000_000,
            new MigrationOptions { Strategy = StrategyKind.PreCopy, DowntimeLimit = TimeSpan.FromMilliseconds(50) });
        using (source)
        using (destination)
        {
            Assert.True(r.Outcome == MigrationOutcome.Completed, r.Error);
            Assert.InRange(r.PrecopyRounds, 1, 3);
            Assert.True(r.Bytes.Live > 0);
            Assert.Equal(0, r.Bytes.Push);
            Assert.Equal(0, r.Bytes.FaultReplies);
            Assert.Equal(0, r.NetworkFaults.Count);
            Assert.Equal(0, r.PagesArrived.Push + r.PagesArrived.Fault + r.PagesArrived.Prefetch);
            Assert.Equal(r.Pages.Live + r.Pages.Pause, r.PagesArrived.Live + r.PagesArrived.Pause);
        }
    }

    [Fact]
    public async Task Precopy_stops_iterating_after_max_rounds_when_the_guest_outruns_the_link()
    {
        (MigrationReport r, LocalVm source, LocalVm destination) = await Harness.MigrateAsync("dirty", "size_mib=4,rate=0", Memory, 5_000_000, FarStop,
            new MigrationOptions { Strategy = StrategyKind.PreCopy, DowntimeLimit = TimeSpan.FromMilliseconds(1), MaxRounds = 3, BandwidthBitsPerSecond = 400_000_000 });
        using (source)
        using (destination)
        {
            Assert.True(r.Outcome == MigrationOutcome.Completed, r.Error);
            Assert.True(r.PrecopyRounds == 3, $"{r.PrecopyRounds} rounds, paused at instruction {r.Guest.InstructionsAtPause:N0}: "
                + string.Join("; ", r.Rounds.Select(x => $"{x.Round}: {x.Pages} pages, {x.DirtiedPages} dirtied")));
            Assert.True(r.Rounds[^1].ExpectedDowntimeMs > 1, "the last round still did not fit the limit");
            Assert.True(r.Pages.Resent > 0, "dirtied pages were sent again");
            Assert.True(r.Bytes.Pause > 0, "the rest went in the pause (stop-and-copy)");
            Assert.Equal(0, r.NetworkFaults.Count);
        }
    }

    [Fact]
    public async Task Postcopy_sends_nothing_ahead_and_every_page_once_by_exact_fault_or_push()
    {
        (MigrationReport r, LocalVm source, LocalVm destination) = await Harness.MigrateAsync("kvstore", "table_mib=16,report_every=50000", Memory, 40_000_000, FarStop,
            new MigrationOptions { Strategy = StrategyKind.PostCopy, BandwidthBitsPerSecond = 400_000_000 });
        using (source)
        using (destination)
        {
            Assert.True(r.Outcome == MigrationOutcome.Completed, r.Error);
            Assert.Equal(0, r.Bytes.Live);
            Assert.Equal(0, r.Pages.Pause);

            long rescued = EveryPageOnceButRescued(r, r.PagesArrived.Fault + r.PagesArrived.Push);
            Assert.Equal(0, r.PagesArrived.Prefetch);
            Assert.InRange(r.Pages.FaultReplies - r.PagesArrived.Fault, 0, rescued);
            Assert.NotNull(r.NetworkFaults.Stages);
            Assert.Equal(r.NetworkFaults.Count, r.NetworkFaults.Stages!.Total.Count);
            Assert.True(r.NetworkFaults.Count > 0, "the guest ran into absent pages");
            Assert.Equal(1, r.Options.LocalityPages);
            Assert.Null(r.WorkingSet);
        }
    }

    /// <summary>
    /// Every page crossed once, but for a page the push held unwritten for too long (it lost its
    /// core) that the guest faulted on: the fault path sent it too (PushQueue.TryRescue), and the
    /// push's copy was dropped at the destination. Returns how many were rescued so.
    /// </summary>
    private static long EveryPageOnceButRescued(MigrationReport r, long arrived)
    {
        long rescued = r.NetworkFaults.RescuedFromPush;
        Assert.Equal(rescued, r.Pages.Resent);
        Assert.Equal(r.Pages.Total - rescued, arrived);
        return rescued;
    }

    [Fact]
    public async Task Hybrid_sends_the_working_set_in_the_pause_and_fetches_a_locality_window_per_fault()
    {
        (MigrationReport r, LocalVm source, LocalVm destination) = await Harness.MigrateAsync("kvstore", "table_mib=16,report_every=50000", Memory, 60_000_000, FarStop,
            new MigrationOptions { Strategy = StrategyKind.Hybrid, BandwidthBitsPerSecond = 400_000_000, LocalityPages = 16 });
        using (source)
        using (destination)
        {
            Assert.True(r.Outcome == MigrationOutcome.Completed, r.Error);
            Assert.NotNull(r.WorkingSet);
            Assert.True(r.WorkingSet!.Pages > 0, $"kvstore has a hot set ({r.WorkingSet.WindowsAvailable} windows, paused at {r.Guest.InstructionsAtPause})");
            Assert.Equal(r.WorkingSet.Pages - r.WorkingSet.Deferred, r.Pages.Pause);
            Assert.Equal(r.WorkingSet.Pages - r.WorkingSet.Deferred, r.PagesArrived.Pause);
            Assert.Equal(0, r.Bytes.Live);

            EveryPageOnceButRescued(r, r.PagesArrived.Pause + r.PagesArrived.Fault + r.PagesArrived.Prefetch + r.PagesArrived.Push);
            if (r.NetworkFaults.Count > 0)
            {
                Assert.True(r.PagesArrived.Prefetch > 0, "faults brought their neighbours");
            }
        }
    }

    [Fact]
    public async Task The_destination_allocates_almost_nothing_between_the_restore_and_the_resume()
    {
        (MigrationReport r, LocalVm source, LocalVm destination) = await Harness.MigrateAsync("dirty", "size_mib=4,rate=0", Memory, 2_000_000, FarStop,
            new MigrationOptions { Strategy = StrategyKind.PostCopy, BandwidthBitsPerSecond = 400_000_000 });
        using (source)
        using (destination)
        {
            Assert.True(r.Outcome == MigrationOutcome.Completed, r.Error);
            Assert.True(r.NetworkFaults.Count > 0 || r.PagesArrived.Push > 0, "pages came after the resume");

            // The fault path's tables (a page-owner table of 4 bytes a page, the stages' lists,
            // the bitmaps: several hundred KiB at this size) are built before the pause.
            Assert.InRange(r.Switchover!.DestinationAllocatedBytes, 1, 32 << 10);
        }
    }

    [Fact]
    public async Task Hybrid_working_set_is_capped_by_the_pause_it_may_cost()
    {
        // 400 Mbit/s for 2 ms: 100,000 bytes, 24 pages, of a hot set several times larger.
        (MigrationReport r, LocalVm source, LocalVm destination) = await Harness.MigrateAsync("kvstore", "table_mib=16,report_every=50000", Memory, 60_000_000, FarStop,
            new MigrationOptions { Strategy = StrategyKind.Hybrid, BandwidthBitsPerSecond = 400_000_000, WorkingSetMaxPause = TimeSpan.FromMilliseconds(2) });
        using (source)
        using (destination)
        {
            Assert.True(r.Outcome == MigrationOutcome.Completed, r.Error);
            Assert.Equal(64L << 20, r.Options.WorkingSetCapBytes);
            Assert.Equal(12, r.WorkingSet!.BudgetPages); // 2 ms less the 1 ms reserve, at 50 MB/s, 4,103 bytes a page on the wire
            Assert.InRange(r.WorkingSet.Pages, 1, 12);
            Assert.Equal(r.WorkingSet.Pages - r.WorkingSet.Deferred, r.Pages.Pause);
        }

        Assert.Equal(64L << 20, StrategyPolicy.For(StrategyKind.Hybrid).WorkingSetCap(new MigrationOptions { WorkingSetMaxPause = TimeSpan.FromMilliseconds(2) })); // unlimited link: no pause cap
        Assert.Equal(8L << 20, StrategyPolicy.For(StrategyKind.Hybrid).WorkingSetCap(new MigrationOptions { WorkingSetMaxBytes = 8L << 20, BandwidthBitsPerSecond = 1_000_000_000, WorkingSetMaxPause = TimeSpan.FromSeconds(1) }));
    }

    [Fact]
    public async Task Hybrid_working_set_fits_the_downtime_limit()
    {
        // No working-set cap of its own: the downtime limit binds. 400 Mbit/s for 5 ms less the 1 ms reserve: 48 pages.
        (MigrationReport r, LocalVm source, LocalVm destination) = await Harness.MigrateAsync("kvstore", "table_mib=16,report_every=50000", Memory, 60_000_000, FarStop,
            new MigrationOptions { Strategy = StrategyKind.Hybrid, BandwidthBitsPerSecond = 400_000_000, DowntimeLimit = TimeSpan.FromMilliseconds(5) });
        using (source)
        using (destination)
        {
            Assert.True(r.Outcome == MigrationOutcome.Completed, r.Error);
            Assert.Equal(48, r.WorkingSet!.BudgetPages);
            Assert.True(r.WorkingSet.Pages is >= 1 and <= 48, $"{r.WorkingSet.Pages} working-set pages ({r.WorkingSet.WindowsAvailable} windows, paused at {r.Guest.InstructionsAtPause})");
            Assert.Equal(r.WorkingSet.Pages - r.WorkingSet.Deferred, r.Pages.Pause);
        }
    }

    [Fact]
    public async Task Auto_on_a_quiet_guest_chooses_precopy_and_everything_crosses_before_the_resume()
    {
        (MigrationReport r, LocalVm source, LocalVm destination) = await Harness.MigrateAsync("idle", "interval_ms=1,pages=4", Memory, 200_000, 4_000_000,
            new MigrationOptions { Strategy = StrategyKind.Auto, BandwidthBitsPerSecond = 400_000_000 });
        using (source)
        using (destination)
        {
            Assert.True(r.Outcome == MigrationOutcome.Completed, r.Error);
            Assert.Equal(StrategyKind.Auto, r.Strategy);
            StrategyDecision d = Assert.Single(r.Decisions);
            Assert.Equal(StrategyKind.PreCopy, d.Choice);
            Assert.Equal(400_000_000 / 8.0 / 4103, d.LinkPagesPerSecond!.Value, 3);
            Assert.True(d.DirtyPagesPerSecond < AutoShare * d.LinkPagesPerSecond, d.Reason);
            Assert.True(r.PrecopyRounds >= 1);
            Assert.Equal(0, r.NetworkFaults.Count);
            Assert.Equal(0, r.Bytes.Push + r.Bytes.FaultReplies);
        }
    }

    [Fact]
    public async Task Auto_goes_hybrid_at_once_when_the_guest_dirties_faster_than_pre_copy_could_converge()
    {
        (MigrationReport r, LocalVm source, LocalVm destination) = await Harness.MigrateAsync("dirty", "size_mib=4,rate=0", Memory, 5_000_000, FarStop,
            new MigrationOptions { Strategy = StrategyKind.Auto, BandwidthBitsPerSecond = 400_000_000 });
        using (source)
        using (destination)
        {
            Assert.True(r.Outcome == MigrationOutcome.Completed, r.Error);

            // The watch is short (10 ms for 4 MiB at this rate): a VM thread that got no CPU in it
            // looks quiet, and auto then starts with pre-copy and leaves it when its rounds stop
            // shrinking. Either way it ends hybrid, never stopping and copying.
            StrategyDecision d = r.Decisions[0];
            Assert.Equal(StrategyKind.Hybrid, r.Decisions[^1].Choice);
            if (d.Choice == StrategyKind.Hybrid)
            {
                Assert.Single(r.Decisions);
                Assert.True(d.DirtyPagesPerSecond >= AutoShare * d.LinkPagesPerSecond, d.Reason);
                Assert.Equal(0, r.PrecopyRounds);

                // The watch's 10 ms carried round 0's head (the link's rate for that long, plus the
                // shaper's idle credit and a few 32-page batches at most): watching cost no time, and what went
                // stays delivered.
                Assert.InRange(r.Bytes.Live, 1, (long)(50e6 * (0.010 + LinkShaper.DefaultBurst.TotalSeconds)) + (3 * 32 * 4200));
            }

            Assert.Equal(231, r.WorkingSet!.BudgetPages); // the default 20 ms limit less the 1 ms reserve, at 50 MB/s
            Assert.InRange(r.Pages.Pause, 0, 231);
            Assert.True(r.PagesArrived.Fault + r.PagesArrived.Prefetch + r.PagesArrived.Push > 0, "the rest came after the resume");
        }
    }

    [Fact]
    public async Task Precopy_with_delta_pages_converges_where_a_guest_changes_a_few_bytes_of_every_page()
    {
        // dirty rewrites one word of each of its pages per pass, far faster than the link: whole
        // pages never fit a 20 ms pause, their changed bytes do.
        var options = new MigrationOptions { Strategy = StrategyKind.PreCopy, BandwidthBitsPerSecond = 400_000_000, DowntimeLimit = TimeSpan.FromMilliseconds(20), DeltaCacheBytes = 16L << 20 };
        (MigrationReport r, LocalVm source, LocalVm destination) = await Harness.MigrateAsync("dirty", "size_mib=4,rate=0", Memory, 5_000_000, FarStop, options);
        using (source)
        using (destination)
        {
            Assert.True(r.Outcome == MigrationOutcome.Completed, r.Error);
            Assert.True(r.Pages.Delta > r.Pages.Resent / 2, $"{r.Pages.Delta} of {r.Pages.Resent} resent pages went as deltas");
            Assert.True(r.Rounds[^1].ExpectedDowntimeMs <= 20, $"it converged: the last round left {r.Rounds[^1].ExpectedDowntimeMs:0.0} ms ({r.PrecopyRounds} rounds)");
            Assert.True(r.PrecopyRounds < 30);
        }
    }

    [Fact]
    public async Task A_precopy_live_phase_longer_than_the_peer_deadline_is_not_taken_for_a_dead_destination()
    {
        // Nothing reads the main connection while pre-copy's rounds go: the destination's
        // heartbeats wait there unread, and its fault connection's prove it alive.
        var options = new MigrationOptions
        {
            Strategy = StrategyKind.PreCopy, BandwidthBitsPerSecond = 400_000_000, DowntimeLimit = TimeSpan.FromMilliseconds(1),
            // The default 5 s deadline: the test runs while the whole suite starts, and on a
            // saturated CI machine (load 20) a starved thread pool was silent for 1.4 and 2.9 s.
            MaxRounds = 1000, MaxLiveTime = TimeSpan.FromSeconds(11), PeerTimeout = TimeSpan.FromSeconds(5),
        };
        (MigrationReport r, LocalVm source, LocalVm destination) = await Harness.MigrateAsync("dirty", "size_mib=4,rate=0", Memory, 5_000_000, 100_000_000_000, options);
        using (source)
        using (destination)
        {
            Assert.True(r.Outcome == MigrationOutcome.Completed, r.Error);
            Assert.True(r.LiveTimeMs > 2 * options.PeerTimeout.TotalMilliseconds, $"the live phase took {r.LiveTimeMs:0} ms");
        }
    }

    private const double AutoShare = 0.1; // AutoPolicy.MaxPrecopyDirtyShare

    [Fact]
    public async Task Hybrid_presend_sends_the_working_set_live_and_only_its_dirtied_part_in_the_pause()
    {
        (MigrationReport r, LocalVm source, LocalVm destination) = await Harness.MigrateAsync("kvstore", "table_mib=16,report_every=50000", Memory, 60_000_000, FarStop,
            new MigrationOptions { Strategy = StrategyKind.Hybrid, WorkingSetPresend = true, BandwidthBitsPerSecond = 400_000_000 });
        using (source)
        using (destination)
        {
            Assert.True(r.Outcome == MigrationOutcome.Completed, r.Error);
            Assert.True(r.Pages.Live > 0, $"the working set went live ({r.WorkingSet!.Pages} pages, {r.WorkingSet.WindowsAvailable} windows)");
            Assert.True(r.Pages.Pause <= r.Pages.Live + r.WorkingSet!.Pages, $"{r.Pages.Pause} pause pages, {r.Pages.Live} live, working set {r.WorkingSet.Pages}");
            Assert.True(r.Pages.Resent <= r.Pages.Live + r.NetworkFaults.RescuedFromPush,
                $"only pages sent live and dirtied since are sent again, and those the fault path rescued from the push ({r.Pages.Resent} resent, {r.Pages.Live} live, {r.NetworkFaults.RescuedFromPush} rescued)");
        }
    }

    [Theory]
    [InlineData(StrategyKind.PostCopy)]
    [InlineData(StrategyKind.Hybrid)]
    public async Task A_live_pass_first_leaves_only_what_the_guest_dirtied_meanwhile_for_after_the_resume(StrategyKind strategy)
    {
        (MigrationReport r, LocalVm source, LocalVm destination) = await Harness.MigrateAsync("kvstore", "table_mib=16,put_pct=1,report_every=50000", Memory, 60_000_000, FarStop,
            new MigrationOptions { Strategy = strategy, LivePasses = 1, BandwidthBitsPerSecond = 400_000_000 });
        using (source)
        using (destination)
        {
            Assert.True(r.Outcome == MigrationOutcome.Completed, r.Error);
            Assert.Single(r.Rounds);
            Assert.Equal(1, r.Options.LivePasses);
            Assert.Equal(r.Rounds[0].Pages, r.Pages.Live);
            Assert.True(r.Pages.Live > 4096, $"the pass sent every populated page, the 16 MiB table among them ({r.Pages.Live})");
            long afterResume = r.PagesArrived.Fault + r.PagesArrived.Prefetch + r.PagesArrived.Push;
            string books = $"{afterResume} arrived after the resume; {r.Pages.Live} sent live, {r.Rounds[0].DirtiedPages} dirtied meanwhile";
            Assert.True(afterResume <= r.Rounds[0].DirtiedPages + 64, $"only pages dirtied since the pass are absent at the resume ({books})");
            // (each a page dirtied since the pass, once; and a page the fault path rescued from a
            // push that lost its core went twice, PushQueue.TryRescue)
            Assert.True(afterResume + r.Pages.Pause + r.NetworkFaults.RescuedFromPush >= r.Pages.Resent,
                $"pages dirtied after the pass were sent again ({books}; {r.Pages.Resent} resent, {r.NetworkFaults.RescuedFromPush} rescued from the push)");
        }
    }

    [Fact]
    public async Task A_refused_handshake_leaves_the_vm_running_at_the_source()
    {
        using LocalVm source = await Harness.StartAsync("idle", "interval_ms=1", Memory, 100_000, ulong.MaxValue);
        (MigrationReport r, LocalVm? destination) = await LocalMigration.RunAsync(source, new MigrationOptions(),
            new LocalMigrationHooks { AdjustSlot = slot => slot with { Config = slot.Config with { MemorySize = 64UL << 20 } } });
        Assert.Null(destination);
        Assert.Equal(MigrationOutcome.Failed, r.Outcome);
        Assert.Contains("memory size mismatch", r.Error);
        Assert.Equal(VmLocation.Source, r.VmLocation);
        Assert.True(source.Runner.IsRunning);
        Assert.False(source.ResumedHere, "it was never paused");
    }

    [Fact]
    public async Task Cancelling_during_the_live_phase_leaves_the_vm_running_at_the_source()
    {
        using LocalVm source = await Harness.StartAsync("dirty", "size_mib=8,rate=0", Memory, 1_000_000, ulong.MaxValue);
        SourceMigration? migration = null;
        Task<(MigrationReport, LocalVm?)> run = LocalMigration.RunAsync(source,
            new MigrationOptions { Strategy = StrategyKind.PreCopy, BandwidthBitsPerSecond = 20_000_000, DowntimeLimit = TimeSpan.FromMilliseconds(1) },
            new LocalMigrationHooks { OnStarted = m => migration = m });
        while (migration?.Progress.Phase != SourcePhase.LiveCopy)
        {
            await Task.Delay(5);
        }

        await Task.Delay(100);
        Assert.True(migration.Cancel());
        (MigrationReport r, LocalVm? destination) = await run;
        Assert.Equal(MigrationOutcome.Cancelled, r.Outcome);
        Assert.Equal(VmLocation.Source, r.VmLocation);
        Assert.True(source.Runner.IsRunning);
        Assert.NotNull(destination?.AbortReason);
    }

    [Fact]
    public async Task Corruption_after_switchover_is_caught_and_the_vm_continues_at_the_source_from_the_switchover_state()
    {
        const ulong stopAt = 150_000_000;
        (string digest, byte[] console) = Harness.Reference("verify", "size_mib=8", Memory, stopAt);
        using LocalVm source = await Harness.StartAsync("verify", "size_mib=8", Memory, 30_000_000, stopAt);
        (MigrationReport r, LocalVm? destination) = await LocalMigration.RunAsync(source,
            new MigrationOptions { Strategy = StrategyKind.PostCopy, BandwidthBitsPerSecond = 400_000_000 },
            new LocalMigrationHooks { Intercept = (role, s) => role == ConnectionRole.Main ? new CorruptingStream(s, PagePhase.Push) : s });
        using (destination)
        {
            Assert.Equal(MigrationOutcome.Failed, r.Outcome);
            Assert.Contains("digest mismatch", r.Error);
            Assert.Equal(VmLocation.Source, r.VmLocation);
            Assert.True(source.ResumedHere);
            Assert.NotNull(destination?.AbortReason);
        }

        // The VM was never lost: it runs on at the source to the same end as an unmigrated run.
        await source.Runner.WaitAsync().WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(stopAt, source.Machine.Hart.InstructionsRetired);
        Assert.Equal(digest, StateDigest.Compute(source.Machine));
        Assert.Equal(console, source.Machine.Console.Read(0).Bytes);
    }

    [Fact]
    public async Task A_connection_lost_after_switchover_is_recovered_and_the_vm_stays_at_the_destination()
    {
        using LocalVm source = await Harness.StartAsync("kvstore", "table_mib=16", Memory, 40_000_000, ulong.MaxValue);
        int mains = 0;
        (MigrationReport r, LocalVm? destination) = await LocalMigration.RunAsync(source,
            new MigrationOptions { Strategy = StrategyKind.PostCopy, BandwidthBitsPerSecond = 200_000_000 },
            new LocalMigrationHooks { Intercept = (role, s) => role == ConnectionRole.Main && Interlocked.Increment(ref mains) == 1 ? new CuttingStream(s, PagePhase.Push, afterFrames: 20) : s });
        using (destination)
        {
            Assert.True(r.Outcome == MigrationOutcome.Completed, r.Error);
            Assert.Equal(VmLocation.Destination, r.VmLocation);
            Assert.False(source.Runner.IsRunning, "the destination runs it: the source must not");
            Assert.False(source.ResumedHere);
            Interruption lost = Assert.Single(r.Liveness!.Interruptions);
            Assert.Contains("connection", lost.Reason);
            Assert.True(lost.PagesResent > 0, "what was in flight is sent again");
            Assert.Null(destination!.AbortReason);
        }
    }
}

/// <summary>Flips one byte of page content in the first raw page of the first Pages frame of a phase.</summary>
internal sealed class CorruptingStream(Stream inner, PagePhase phase) : DelegatingStream(inner)
{
    private bool _nextIsPayload;
    private bool _done;

    protected override ReadOnlyMemory<byte> OnWrite(ReadOnlyMemory<byte> buffer)
    {
        if (!_done && _nextIsPayload && buffer.Length > 200 && buffer.Span[0] == (byte)phase && buffer.Span[8 + 4] == 1)
        {
            byte[] copy = buffer.ToArray();
            copy[8 + 7 + 100] ^= 0x5A;
            _done = true;
            buffer = copy;
        }

        _nextIsPayload = buffer.Length == 8 && buffer.Span[0] == (byte)MessageType.Pages;
        return buffer;
    }
}

/// <summary>Breaks the connection after a number of Pages frames of a phase.</summary>
internal sealed class CuttingStream(Stream inner, PagePhase phase, int afterFrames) : DelegatingStream(inner)
{
    private bool _nextIsPayload;
    private int _frames;

    protected override ReadOnlyMemory<byte> OnWrite(ReadOnlyMemory<byte> buffer)
    {
        if (_nextIsPayload && buffer.Length > 0 && buffer.Span[0] == (byte)phase && ++_frames > afterFrames)
        {
            Inner.Dispose();
            throw new IOException("connection reset (test)");
        }

        _nextIsPayload = buffer.Length == 8 && buffer.Span[0] == (byte)MessageType.Pages;
        return buffer;
    }
}
