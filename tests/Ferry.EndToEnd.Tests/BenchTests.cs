using System.Text.Json;
using Ferry.Cli.Bench;
using Ferry.Migration.Strategies;
using Xunit;

namespace Ferry.EndToEnd.Tests;

/// <summary>`ferry bench --quick` end to end: its outputs exist, parse, and cover every strategy and workload (Linux's included).</summary>
[Collection("bench")]
public sealed class BenchTests
{
    [Fact]
    public async Task Quick_bench_writes_results_for_every_strategy_and_workload()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"ferry-bench-{Environment.ProcessId}");
        try
        {
            (int exit, string stdout, string stderr) = await Ferry.RunTextAsync(TimeSpan.FromMinutes(10), "bench", "--quick", "--out", dir);
            Assert.True(exit == 0, stderr + stdout);

            BenchResults results = JsonSerializer.Deserialize<BenchResults>(await File.ReadAllTextAsync(Path.Combine(dir, "results.json")), BenchResults.Json)!;
            string[] workloads = ["idle", "dirty-slow", "dirty-fast", "kvstore", "verify", "linux-idle", "linux-kvstore"];
            List<string> strategies = ["precopy", "postcopy", "hybrid", "hybrid-pass", "auto"];
            if (results.Machine.Qemu is not null)
            {
                strategies.AddRange(["qemu-precopy", "qemu-postcopy", "qemu-postcopy-preempt"]);
            }

            Assert.Equal(workloads, results.Workloads.Select(w => w.Name));
            // One unmeasured move per Ferry strategy ran first, and none of them is among the runs.
            Assert.Equal(5, results.WarmUpMoves);
            Assert.DoesNotContain(results.Runs, r => r.Report?.Vm.StartsWith("warm-up", StringComparison.Ordinal) == true);
            foreach (string w in workloads)
            {
                foreach (string s in strategies)
                {
                    BenchRun run = Assert.Single(results.Runs, r => r.Workload == w && r.Strategy == s);
                    if (!s.StartsWith("qemu", StringComparison.Ordinal))
                    {
                        // Ferry's migrations always finish (pre-copy by stop-and-copy if it must) with a full report.
                        Assert.Contains(run.Outcome, new[] { BenchOutcome.Completed, BenchOutcome.ForcedStopAndCopy });
                        Assert.NotNull(run.Report);
                        Assert.True(run.TotalTimeMs > 0 && run.DowntimeMs > 0 && run.BytesOnWire > 0);
                        Assert.Equal(s == "hybrid-pass" ? "hybrid" : s, StrategyPolicy.NameOf(run.Report!.Strategy));
                        Assert.Equal(s == "hybrid-pass" ? 1 : 0, run.Report.Options.LivePasses);
                        if (s != "precopy" && run.NetworkFaults > 0)
                        {
                            // Every fault timed stage by stage.
                            Assert.NotNull(run.Report.NetworkFaults.Stages);
                            Assert.Equal(run.NetworkFaults, run.Report.NetworkFaults.Stages!.Total.Count);
                            Assert.True(run.StallPerFaultMs > 0);
                        }
                    }
                }
            }

            // Linux: boots to ready timed on both machines, and QEMU's kvstore speed read from its console.
            Assert.NotNull(results.LinuxBoot);
            Assert.All(results.LinuxBoot!.Ferry, b => Assert.InRange(b.Instructions!.Value, 1_000_000UL, 600_000_000UL));
            if (results.Machine.Qemu is not null)
            {
                Assert.All(results.LinuxBoot.QemuIcount!, b => Assert.InRange(b.Instructions!.Value, 1_000_000UL, 600_000_000UL));
                Assert.All(results.Runs.Where(r => r.Workload == "linux-kvstore" && r.Strategy.StartsWith("qemu", StringComparison.Ordinal)),
                    r => Assert.True(r.GuestMips > 0, $"{r.Strategy}: no guest speed from QEMU's console"));
            }

            string[] csv = await File.ReadAllLinesAsync(Path.Combine(dir, "results.csv"));
            Assert.StartsWith("strategy,workload,repeat,outcome,totalTimeMs,downtimeMs,bytesOnWire,networkFaults", csv[0]);
            Assert.Equal(results.Runs.Count + 1, csv.Length);
            foreach (string plot in new[] { "bars-total-time.png", "bars-downtime.png", "bars-bytes.png", "bars-faults.png", "bars-stall-per-fault.png", "timeline-kvstore-hybrid.png", "guest-speed-kvstore.png" })
            {
                byte[] png = await File.ReadAllBytesAsync(Path.Combine(dir, plot));
                Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, png[..4]);
            }
        }
        finally
        {
            if (Directory.Exists(dir))
            {
                Directory.Delete(dir, recursive: true);
            }
        }
    }

    [KernelLinkFact]
    public async Task Bench_over_a_kernel_link_runs_ferry_and_qemu_through_a_network_namespace()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"ferry-bench-netns-{Environment.ProcessId}");
        try
        {
            (int exit, string stdout, string stderr) = await Ferry.RunTextAsync(TimeSpan.FromMinutes(4), "bench", "--quick", "--link", "netns",
                "--workloads", "kvstore", "--strategies", "postcopy,qemu-postcopy", "--out", dir);
            Assert.True(exit == 0, stderr + stdout);
            BenchResults results = JsonSerializer.Deserialize<BenchResults>(await File.ReadAllTextAsync(Path.Combine(dir, "results.json")), BenchResults.Json)!;
            Assert.Equal("netns", results.Link);
            BenchRun ferry = Assert.Single(results.Runs, r => r.Strategy == "postcopy");
            Assert.Equal(BenchOutcome.Completed, ferry.Outcome);

            // Ferry's own limiter was off: the kernel's link set the rate (the total is at least
            // the link's time for the pages, which an unlimited loopback would beat by far).
            Assert.Equal(0, ferry.Report!.Options.BandwidthBitsPerSecond);
            Assert.True(ferry.TotalTimeMs >= ferry.LinkLimitMs * 0.9, $"total {ferry.TotalTimeMs} ms, link limit {ferry.LinkLimitMs} ms");
            Assert.True(ferry.NetworkFaults > 0);
            if (results.Machine.Qemu is not null)
            {
                BenchRun qemu = Assert.Single(results.Runs, r => r.Strategy == "qemu-postcopy");
                Assert.True(qemu.Outcome == BenchOutcome.Completed, qemu.Error);
                Assert.True(qemu.TotalTimeMs >= qemu.LinkLimitMs * 0.9, $"QEMU total {qemu.TotalTimeMs} ms, link limit {qemu.LinkLimitMs} ms");
            }

            // The namespace is gone afterwards.
            (int _, string namespaces, string _) = await RunAsync("ip", "netns", "list");
            Assert.DoesNotContain("ferry-bench-", namespaces);
        }
        finally
        {
            if (Directory.Exists(dir))
            {
                Directory.Delete(dir, recursive: true);
            }
        }
    }

    private static async Task<(int Exit, string Out, string Err)> RunAsync(string file, params string[] args)
    {
        var psi = new System.Diagnostics.ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }

        using var p = System.Diagnostics.Process.Start(psi)!;
        string o = await p.StandardOutput.ReadToEndAsync(), e = await p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        return (p.ExitCode, o, e);
    }
}

/// <summary>A fact that creates network namespaces and qdiscs: skipped, with the reason, without root or iproute2 (CI runs as root and has both).</summary>
public sealed class KernelLinkFactAttribute : FactAttribute
{
    public KernelLinkFactAttribute()
    {
        if (!OperatingSystem.IsLinux() || !Environment.IsPrivilegedProcess || !File.Exists("/usr/sbin/tc") || !File.Exists("/usr/sbin/ip"))
        {
            Skip = "--link netns needs root and iproute2's ip and tc";
        }
    }
}
