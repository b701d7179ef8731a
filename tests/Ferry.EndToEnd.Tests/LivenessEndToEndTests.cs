using System.Diagnostics;
using System.Net.Http.Json;
using System.Text;
using Ferry.Host;
using Ferry.Migration.Metrics;
using Xunit;
using Xunit.Abstractions;

namespace Ferry.EndToEnd.Tests;

/// <summary>
/// Peers that stall or die, with real host processes: SIGSTOP (a hung host: its sockets stay
/// open and silent) and SIGKILL of the source or the destination agent, before and after the
/// switchover. Each case checks that the stall is shown and detected within the peer timeout,
/// where the VM is, and (where the migration completes) that it reaches the unmigrated digest.
/// Each test runs its own pair of hosts (it stops or kills them).
/// </summary>
[Collection("liveness")]
public sealed class LivenessEndToEndTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Long = VerifyMigrations.Long;
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(1);

    /// <summary>Detection is observed by polling the API every few ms from a loaded test machine.</summary>
    private static readonly TimeSpan Slack = TimeSpan.FromMilliseconds(750);



    private static Task<HostProcess> StartHostAsync(string name) => HostProcess.StartAsync(name, null, "--peer-timeout", "1s", "--reconnect-window", "60s", "--no-warm-up");

    [Theory]
    [InlineData("postcopy")]
    [InlineData("hybrid")]
    public async Task A_destination_stopped_after_the_switchover_is_detected_and_the_migration_recovers_when_it_continues(string strategy)
    {
        await using HostProcess a = await StartHostAsync("A");
        await using HostProcess b = await StartHostAsync("B");
        string name = "stopped-dest-" + strategy;
        string id = await VerifyMigrations.StartMigrationAsync(a, b, name, strategy, "20Mbit");
        await VerifyMigrations.WaitPhaseAsync(a, id, "postcopy");

        await b.SignalAsync("STOP");
        (TimeSpan stallShown, TimeSpan detected, TimeSpan? polledDuringStall) = await WatchSourceAsync(a, id);
        output.WriteLine($"{strategy}: stall shown after {stallShown.TotalMilliseconds:0} ms, recovering after {detected.TotalMilliseconds:0} ms");

        // A status answered while the stall lasted (past two heartbeat intervals, before the
        // deadline) must show it; a loaded machine may answer none in that window.
        Assert.True(polledDuringStall is null || stallShown < detected, $"the stall is shown while it lasts, before the deadline (a status answered at {polledDuringStall?.TotalMilliseconds:0} ms did not show it)");
        Assert.InRange(detected, TimeSpan.Zero, Deadline + Slack);
        VmStatus atA = await Api.StatusAsync(a.Api, name);
        Assert.NotEqual(VmState.Running, atA.State); // paused at the source: the destination may run it

        await Task.Delay(Deadline * 2); // stays stopped a while: the source keeps trying
        await b.SignalAsync("CONT");
        MigrationStatus done;
        try
        {
            done = await Api.WaitMigrationAsync(a.Api, id, Long);
        }
        catch (TimeoutException)
        {
            output.WriteLine($"A: {a.Log}\nB: {b.Log}");
            throw;
        }

        Assert.True(done.Phase == "completed", $"{done.Report?.Error}\nA: {a.Log}\nB: {b.Log}");
        Assert.NotEmpty(done.Report!.Liveness!.Interruptions);
        Assert.All(done.Report.Liveness.Interruptions, i => Assert.NotNull(i.RecoveredAfterMs));
        await VerifyMigrations.AssertDigestAsync(b, name);
    }

    [Fact]
    public async Task A_source_stopped_after_the_switchover_leaves_the_vm_waiting_on_the_network_and_recovers_when_it_continues()
    {
        await using HostProcess a = await StartHostAsync("A");
        await using HostProcess b = await StartHostAsync("B");
        const string name = "stopped-source";
        (string id, _) = await SignalSourceAfterSwitchoverAsync(a, b, name, "STOP");
        (int exit, string stdout, _) = await Ferry.RunTextAsync(Long, "vm", "status", name, "--host", b.Api);
        Assert.Equal(0, exit);
        Assert.Contains("waiting on network", stdout);

        await a.SignalAsync("CONT");
        MigrationStatus done = await Api.WaitMigrationAsync(a.Api, id, Long);
        Assert.True(done.Phase == "completed", $"{done.Report?.Error}\nA: {a.Log}\nB: {b.Log}");
        await VerifyMigrations.AssertDigestAsync(b, name);
    }

    [Fact]
    public async Task A_source_killed_after_the_switchover_never_costs_the_destination_its_vm()
    {
        await using HostProcess a = await StartHostAsync("A");
        await using HostProcess b = await StartHostAsync("B");
        const string name = "killed-source";
        await SignalSourceAfterSwitchoverAsync(a, b, name, "KILL");

        // It stays: the destination never discards a VM it resumed.
        await Task.Delay(Deadline * 3);
        VmStatus later = await Api.StatusAsync(b.Api, name);
        Assert.NotEqual(VmState.Failed, later.State);
        Assert.True(later.WaitingOnNetwork);
        Assert.Matches("[0-9]+ pages not yet here", later.Detail);
    }

    [Fact]
    public async Task A_source_killed_after_the_switchover_and_restarted_on_its_state_dir_serves_the_page_file_and_the_vm_survives_with_its_digest()
    {
        string stateDir = Path.Combine(Path.GetTempPath(), $"ferry-state-{Environment.ProcessId}-{Guid.NewGuid():N}");
        string[] durable = ["--peer-timeout", "1s", "--no-warm-up", "--state-dir", stateDir];
        HostProcess a = await HostProcess.StartAsync("A", null, durable);
        await using HostProcess b = await StartHostAsync("B");
        const string name = "crashed-source";
        try
        {
            await using (a)
            {
                await SignalSourceAfterSwitchoverAsync(a, b, name, "KILL");
            }

            string[] files = Directory.GetFiles(Path.Combine(stateDir, "pages"), "*.pages");
            Assert.Single(files);

            // The same state directory, another port: the restarted agent dials the destination itself.
            await using HostProcess again = await HostProcess.StartAsync("A2", null, durable);
            VmStatus atB;
            try
            {
                atB = await Api.WaitAsync(b.Api, name, s => !s.WaitingOnNetwork, Long);
            }
            finally
            {
                output.WriteLine("restarted source: " + again.Log);
                output.WriteLine("destination: " + b.Log);
            }

            Assert.NotEqual(VmState.Failed, atB.State);
            await VerifyMigrations.AssertDigestAsync(b, name);
            var until = Stopwatch.StartNew();
            while (Directory.GetFiles(Path.Combine(stateDir, "pages"), "*.pages").Length > 0 && until.Elapsed < TimeSpan.FromSeconds(30))
            {
                await Task.Delay(50);
            }

            Assert.Empty(Directory.GetFiles(Path.Combine(stateDir, "pages"), "*.pages")); // served: nothing is owed any more
            Assert.Contains("from its page file: completed", again.Log, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(stateDir, recursive: true);
        }
    }

    [Fact]
    public async Task A_destination_stopped_before_the_switchover_fails_the_migration_within_the_deadline_and_the_vm_runs_on_at_the_source()
    {
        await using HostProcess a = await StartHostAsync("A");
        await using HostProcess b = await StartHostAsync("B");
        const string name = "stopped-before";
        // It must still run when the migration has failed: no stop in sight.
        string id = await VerifyMigrations.StartMigrationAsync(a, b, name, "precopy", "20Mbit", guest: "dirty", config: "size_mib=16,rate=0", stopAt: 1_000_000_000_000);
        await VerifyMigrations.WaitPhaseAsync(a, id, "livecopy");

        await b.SignalAsync("STOP");
        var stopped = Stopwatch.StartNew();
        MigrationStatus done = await Api.WaitMigrationAsync(a.Api, id, Long);
        TimeSpan detected = stopped.Elapsed;
        output.WriteLine($"failed after {detected.TotalMilliseconds:0} ms (silence at detection {done.Report?.Liveness?.DetectedAfterMs:0} ms): {done.Report?.Error}");
        Assert.InRange(done.Report!.Liveness!.DetectedAfterMs, Deadline.TotalMilliseconds * 0.8, (Deadline + Slack).TotalMilliseconds);

        // Detected, then told to the (stopped) destination for at most 2 s before the report is final.
        Assert.InRange(detected, TimeSpan.Zero, Deadline + Slack + TimeSpan.FromSeconds(2));
        Assert.Equal("failed", done.Phase);
        Assert.Equal(VmLocation.Source, done.Report!.VmLocation);
        Assert.Contains("silent", done.Report.Error);
        VmStatus before = await Api.StatusAsync(a.Api, name);
        Assert.Equal(VmState.Running, before.State);
        await Api.WaitAsync(a.Api, name, s => s.InstructionsRetired > before.InstructionsRetired, Long);

        // Continued, the destination finds the source gone and discards its copy.
        await b.SignalAsync("CONT");
        var until = Stopwatch.StartNew();
        while (await Api.TryStatusAsync(b.Api, name) is not null && until.Elapsed < Long)
        {
            await Task.Delay(100);
        }

        Assert.Null(await Api.TryStatusAsync(b.Api, name));
    }

    /// <summary>
    /// A post-copy migration of <paramref name="name"/> from a to b; once past the switchover,
    /// <paramref name="signal"/> to the source agent. The destination VM must say, within the
    /// deadline, that it waits on the network and how many pages it lacks.
    /// </summary>
    private async Task<(string Id, VmStatus Waiting)> SignalSourceAfterSwitchoverAsync(HostProcess a, HostProcess b, string name, string signal)
    {
        string id = await VerifyMigrations.StartMigrationAsync(a, b, name, "postcopy", "20Mbit");
        await VerifyMigrations.WaitPhaseAsync(a, id, "postcopy");
        await a.SignalAsync(signal);
        var signalled = Stopwatch.StartNew();
        VmStatus waiting = await Api.WaitAsync(b.Api, name, s => s.WaitingOnNetwork, Long);
        output.WriteLine($"SIG{signal} source: destination waiting on the network after {signalled.Elapsed.TotalMilliseconds:0} ms: {waiting.State}: {waiting.Detail}");
        Assert.InRange(signalled.Elapsed, TimeSpan.Zero, Deadline + Slack);
        Assert.Matches("[0-9]+ pages not yet here", waiting.Detail);
        return (id, waiting);
    }

    /// <summary>
    /// From now: when the source's status first showed a stall, when it entered recovery, and
    /// when a status asked for after the stall began (two heartbeat intervals in) was answered
    /// before the recovery (null: none was).
    /// </summary>
    private static async Task<(TimeSpan StallShown, TimeSpan Recovering, TimeSpan? PolledDuringStall)> WatchSourceAsync(HostProcess a, string id)
    {
        var watch = Stopwatch.StartNew();
        TimeSpan stall = TimeSpan.MaxValue;
        TimeSpan? polledDuringStall = null;
        TimeSpan stallBegins = Deadline * 2 / 5 + TimeSpan.FromMilliseconds(100);
        while (watch.Elapsed < Long)
        {
            TimeSpan asked = watch.Elapsed;
            MigrationStatus s = await Api.MigrationAsync(a.Api, id);
            if (s.PeerSilentMs > 0 && stall == TimeSpan.MaxValue)
            {
                stall = watch.Elapsed;
            }

            if (s.Phase == "recovering")
            {
                Assert.Contains("silent", s.Detail);
                return (stall, watch.Elapsed, polledDuringStall);
            }

            if (asked >= stallBegins)
            {
                polledDuringStall ??= watch.Elapsed;
            }

            Assert.False(s.Done, $"the migration ended ({s.Phase}: {s.Report?.Error}) instead of recovering");
            await Task.Delay(25);
        }

        throw new TimeoutException("no recovery");
    }

}

[CollectionDefinition("liveness", DisableParallelization = true)]
public sealed class LivenessCollection;
