using System.Diagnostics;
using Ferry.Host;
using Ferry.Migration.Metrics;
using Xunit;
using Xunit.Abstractions;

namespace Ferry.EndToEnd.Tests;

/// <summary>
/// The failure matrix between real host processes: a TCP fault proxy (<see cref="TcpFaultProxy"/>)
/// between the source agent and the destination's data endpoint cuts, stalls or corrupts the
/// migration's main connection at a byte count, before and after the switchover; and eight VMs
/// migrate at once between the same two agents. Each case asserts where the VM ends, that it
/// reaches the unmigrated run's digest there, and (for a stall) that it was detected within the
/// peer timeout.
/// </summary>
[Collection("liveness")]
public sealed class FaultProxyEndToEndTests(ITestOutputHelper output)
{
    /// <summary>Two seconds: one second of silence can be a loaded CI machine's scheduling alone, and the fault must fire first.</summary>
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(2);

    /// <summary>The status is polled from a loaded test machine (docs/failures.md has the measured values).</summary>
    private static readonly TimeSpan Slack = TimeSpan.FromMilliseconds(1500);

    /// <summary>Past the Hello and the switchover state: inside pre-copy's first round, or post-copy's push (24 MiB guest).</summary>
    private const long Trigger = 3L << 20;

    private static Task<HostProcess> StartHostAsync(string name) => HostProcess.StartAsync(name, null, "--peer-timeout", "2s", "--reconnect-window", "60s", "--no-warm-up");

    [Theory]
    [InlineData("precopy", ProxyFault.Cut, VmLocation.Source)]
    [InlineData("precopy", ProxyFault.Stall, VmLocation.Source)]
    [InlineData("postcopy", ProxyFault.Cut, VmLocation.Destination)]
    [InlineData("hybrid", ProxyFault.Stall, VmLocation.Destination)]
    [InlineData("postcopy", ProxyFault.Corrupt, VmLocation.Source)]
    public async Task A_fault_on_the_wire_never_loses_the_vm(string strategy, ProxyFault fault, VmLocation vmEndsAt)
    {
        await using HostProcess a = await StartHostAsync("A");
        await using HostProcess b = await StartHostAsync("B");
        await using var proxy = new TcpFaultProxy(b.Data, fault, Trigger);
        string name = $"proxied-{strategy}-{fault}".ToLowerInvariant();
        string id = await VerifyMigrations.StartMigrationAsync(a, b, name, strategy, "40Mbit", via: proxy.Endpoint);

        MigrationStatus done = await Api.WaitMigrationAsync(a.Api, id, VerifyMigrations.Long);
        TimeSpan sinceFault = Stopwatch.GetElapsedTime(proxy.FiredAt);
        output.WriteLine($"| {strategy} | {fault} at {Trigger >> 20} MiB | {done.Phase} | {done.Report?.VmLocation} | {done.Report?.Liveness?.DetectedAfterMs:0} ms | {done.Report?.Liveness?.Interruptions.Count} | {done.Report?.Error} |");
        output.WriteLine(proxy.Describe());
        Assert.True(proxy.Fired, "the fault must have fired");
        Assert.Equal(vmEndsAt, done.Report!.VmLocation);
        if (vmEndsAt == VmLocation.Destination)
        {
            Assert.True(done.Phase == "completed", $"{done.Report.Error}\nA: {a.Log}\nB: {b.Log}");
            // The fault's interruption, recovered (a loaded machine may add a spurious one: recovered too).
            Assert.NotEmpty(done.Report.Liveness!.Interruptions);
            Assert.All(done.Report.Liveness.Interruptions, i => Assert.NotNull(i.RecoveredAfterMs));
            Assert.True(proxy.Connections >= 4, "the recovery reconnected (main and fault) through the proxy");
            await VerifyMigrations.AssertDigestAsync(b, name);
        }
        else
        {
            Assert.Equal("failed", done.Phase);
            await VerifyMigrations.AssertDigestAsync(a, name);
            Assert.Null(await Api.TryStatusAsync(b.Api, name) is { State: VmState.Running } ? "running at the destination too" : null);
        }

        if (fault == ProxyFault.Stall)
        {
            Assert.InRange(done.Report.Liveness!.DetectedAfterMs, Deadline.TotalMilliseconds * 0.8, (Deadline + Slack).TotalMilliseconds);
        }

        Assert.True(sinceFault > TimeSpan.Zero);
    }

    [Fact]
    public async Task Eight_vms_migrate_at_once_between_the_same_two_hosts_and_each_keeps_its_digest()
    {
        await using HostProcess a = await HostProcess.StartAsync("A", null, "--no-warm-up");
        await using HostProcess b = await HostProcess.StartAsync("B", null, "--no-warm-up");
        const string config = "size_mib=6";
        const ulong stopAt = 3_000_000_000;
        const string memory = "16M";
        string[] strategies = ["precopy", "postcopy", "hybrid", "auto", "precopy", "postcopy", "hybrid", "auto"];
        string[] names = strategies.Select((s, i) => $"many{i}-{s}").ToArray();
        await Task.WhenAll(names.Select(n => VerifyMigrations.StartVmAsync(a, n, VerifyMigrations.Guest, config, stopAt, memory)));

        string[] ids = await Task.WhenAll(names.Select((n, i) => VerifyMigrations.MigrateAsync(a, b, n, strategies[i], "200Mbit", memory, downtimeLimitMs: 20)));
        MigrationStatus[] done;
        try
        {
            done = await Task.WhenAll(ids.Select(id => Api.WaitMigrationAsync(a.Api, id, VerifyMigrations.Long)));
        }
        catch (TimeoutException e)
        {
            throw new TimeoutException($"{e.Message}\nA: {a.Log}\nB: {b.Log}", e);
        }

        for (int i = 0; i < names.Length; i++)
        {
            output.WriteLine($"{names[i]}: {done[i].Phase}, downtime {done[i].Report?.DowntimeMs:0.0} ms, total {done[i].Report?.TotalTimeMs:0} ms {done[i].Report?.Error}");
        }

        Assert.All(done, d => Assert.True(d.Phase == "completed" && d.Report!.VmLocation == VmLocation.Destination, d.Report?.Error));
        foreach (string n in names)
        {
            await VerifyMigrations.AssertDigestAsync(b, n, VerifyMigrations.Guest, config, stopAt, memory);
        }
    }
}
