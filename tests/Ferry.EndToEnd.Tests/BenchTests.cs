using System.Text.Json;
using Ferry.Cli.Bench;
using Xunit;

namespace Ferry.EndToEnd.Tests;

/// <summary>`ferry bench --quick` end to end: its outputs exist, parse, and cover every strategy and workload.</summary>
public sealed class BenchTests
{
    [Fact]
    public async Task Quick_bench_writes_results_for_every_strategy_and_workload()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"ferry-bench-{Environment.ProcessId}");
        try
        {
            (int exit, string stdout, string stderr) = await Ferry.RunTextAsync(TimeSpan.FromMinutes(6), "bench", "--quick", "--out", dir);
            Assert.True(exit == 0, stderr + stdout);

            BenchResults results = JsonSerializer.Deserialize<BenchResults>(await File.ReadAllTextAsync(Path.Combine(dir, "results.json")), BenchResults.Json)!;
            string[] workloads = ["idle", "dirty-slow", "dirty-fast", "kvstore", "verify"];
            List<string> strategies = ["precopy", "postcopy", "hybrid", "hybrid-pass"];
            if (results.Machine.Qemu is not null)
            {
                strategies.AddRange(["qemu-precopy", "qemu-postcopy"]);
            }

            Assert.Equal(workloads, results.Workloads.Select(w => w.Name));
            foreach (string w in workloads)
            {
                foreach (string s in strategies)
                {
                    BenchRun run = Assert.Single(results.Runs, r => r.Workload == w && r.Strategy == s);
                    if (!s.StartsWith("qemu", StringComparison.Ordinal))
                    {
                        // Ferry's migrations always finish (pre-copy by stop-and-copy if it must) with a full report.
                        Assert.Contains(run.Outcome, new[] { "completed", "forced-stop-and-copy" });
                        Assert.NotNull(run.Report);
                        Assert.True(run.TotalTimeMs > 0 && run.DowntimeMs > 0 && run.BytesOnWire > 0);
                        Assert.Equal(s == "hybrid-pass" ? "hybrid" : s, run.Report!.Strategy);
                        Assert.Equal(s == "hybrid-pass" ? 1 : 0, run.Report.Options.LivePasses);
                    }
                }
            }

            string[] csv = await File.ReadAllLinesAsync(Path.Combine(dir, "results.csv"));
            Assert.StartsWith("strategy,workload,repeat,outcome,totalTimeMs,downtimeMs,bytesOnWire,networkFaults", csv[0]);
            Assert.Equal(results.Runs.Count + 1, csv.Length);
            foreach (string plot in new[] { "bars-total-time.png", "bars-downtime.png", "bars-bytes.png", "bars-faults.png", "timeline-kvstore-hybrid.png" })
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
}
