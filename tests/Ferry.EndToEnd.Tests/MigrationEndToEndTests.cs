using System.Collections.Concurrent;
using System.Text;
using System.Text.Json;
using Ferry.Host;
using Ferry.Migration.Metrics;
using Ferry.Migration.Strategies;
using Xunit;

namespace Ferry.EndToEnd.Tests;

/// <summary>
/// The proof that nothing is lost: a VM started with --icount --stop-at N on host A, migrated
/// to host B while it runs, reaches the digest and console output of `ferry run --icount
/// --max-instructions N --digest`, for every strategy and workload (a Linux VM among them),
/// with two real host processes.
/// </summary>
[Collection("hosts")]
public sealed class MigrationEndToEndTests(TwoHosts hosts)
{
    private static readonly TimeSpan Long = TimeSpan.FromMinutes(3);
    private static readonly ConcurrentDictionary<string, Task<(string Digest, byte[] Console)>> References = new();

    public static TheoryData<string, string, string, ulong> Cases()
    {
        var data = new TheoryData<string, string, string, ulong>();
        (string Guest, string Config, ulong StopAt)[] workloads =
        [
            ("idle", "interval_ms=2,pages=8", 3_000_000),
            // Long enough that the translator (1,000 MIPS and more) still runs them when the migration starts.
            ("dirty", "size_mib=16,rate=0", 4_000_000_000), // 400 MIPS or so: 10 s of its run
            ("verify", "size_mib=8", 8_000_000_000),
            ("kvstore", "table_mib=32,report_every=50000", 8_000_000_000),

            // Linux 6.1 on OpenSBI, its initramfs running kvstore: ready at about 19 M instructions.
            ("linux", "workload=kvstore,table_mib=8,report_every=100000", 1_000_000_000),
        ];
        foreach (string strategy in new[] { "precopy", "postcopy", "hybrid" })
        {
            foreach ((string guest, string config, ulong stopAt) in workloads)
            {
                data.Add(strategy, guest, config, stopAt);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Migrated_vm_matches_the_unmigrated_run(string strategy, string guest, string config, ulong stopAt)
    {
        Task<(string Digest, byte[] Console)> reference = References.GetOrAdd($"{guest}/{config}/{stopAt}", _ => ReferenceAsync(guest, config, stopAt));
        string name = $"{guest}-{strategy}";
        string reportFile = Path.Combine(Path.GetTempPath(), $"ferry-e2e-{name}-{Environment.ProcessId}.json");

        (int exit, string stdout, string stderr) = await Ferry.RunTextAsync(Long, "vm", "start", guest, "--host", hosts.A.Api, "--name", name,
            "--memory", "64M", "--icount", "--stop-at", stopAt.ToString(), "--config", config, "--json");
        Assert.True(exit == 0, stderr);
        Assert.Equal(VmState.Running, JsonSerializer.Deserialize<VmStatus>(stdout, ApiJson.Options)!.State);

        // Let it run a while at A, then move it while it still runs (most of its run still ahead, for a loaded machine).
        await Api.WaitAsync(hosts.A.Api, name, s => s.InstructionsRetired >= stopAt / 20 || s.State != VmState.Running, Long);
        (exit, _, stderr) = await Ferry.RunTextAsync(Long, "migrate", name, "--from", hosts.A.Api, "--to", hosts.B.Api,
            "--strategy", strategy, "--quiet", "--json", reportFile, "--downtime-limit", "20ms", "--max-rounds", "8");
        Assert.True(exit == 0, $"migrate failed: {stderr}\nA: {hosts.A.Log}\nB: {hosts.B.Log}");
        MigrationReport report = JsonSerializer.Deserialize<MigrationReport>(await File.ReadAllTextAsync(reportFile), MigrationReport.Json)!;
        File.Delete(reportFile);
        Assert.Equal(MigrationOutcome.Completed, report.Outcome);
        Assert.Equal(strategy, StrategyPolicy.NameOf(report.Strategy));
        Assert.True(report.Guest.InstructionsAtPause < stopAt, $"the VM had already stopped ({report.Guest.InstructionsAtPause}) when it was migrated");
        Assert.True(report.BytesOnWire > 0);
        // Each process's JIT while it moved, the destination's carried in its metrics.
        Assert.True(report.Runtime is { SourceJit.Methods: >= 0, DestinationJit.Methods: >= 0 }, "the report lacks a side's JIT activity");

        // At B it runs on to N and stops there.
        VmStatus atB = await Api.WaitAsync(hosts.B.Api, name, s => s.State != VmState.Running && s.State != VmState.Incoming && s.Digest is not null, Long);
        Assert.Equal(VmState.Paused, atB.State);
        Assert.Equal(stopAt, atB.InstructionsRetired);
        VmStatus atA = await Api.StatusAsync(hosts.A.Api, name);
        Assert.Equal(VmState.Migrated, atA.State);

        (string digest, byte[] console) = await reference;
        Assert.Equal(digest, atB.Digest);

        // Console: A's part, then B's from where A's ended: nothing lost, nothing repeated.
        byte[] fromA = await Api.ConsoleAsync(hosts.A.Api, name, 0);
        byte[] fromB = await Api.ConsoleAsync(hosts.B.Api, name, atB.ConsoleStart);
        Assert.Equal(atB.ConsoleStart, fromA.Length);
        string expected = Encoding.ASCII.GetString(console);
        string actual = Encoding.ASCII.GetString([.. fromA, .. fromB]);
        Assert.Equal(expected, actual);
        Assert.DoesNotContain("CORRUPT", actual);
        Assert.NotEmpty(fromB);

        (exit, _, stderr) = await Ferry.RunTextAsync(Long, "vm", "rm", name, "--host", hosts.B.Api);
        Assert.True(exit == 0, stderr);
    }

    /// <summary>
    /// A host started as a user starts it runs its warm-up migrations again for the runtime's
    /// tiering before it reports ready, and says what each round compiled, then calls its own
    /// control API as a move's clients will; a count out of range is refused with one line.
    /// </summary>
    [Fact]
    public async Task A_host_runs_its_tiering_rounds_before_it_is_ready_and_refuses_a_bad_count()
    {
        Assert.Contains($"warm-up: {TwoHosts.DefaultWarmUpRounds} more rounds for the runtime's tiering", hosts.A.Log, StringComparison.Ordinal);
        Assert.Contains($"warm-up: {(ApiWarmUp.CallsPerRound * 5 * 2) + 2} calls of the control API", hosts.A.Log, StringComparison.Ordinal); // before it announced its API
        Assert.DoesNotContain("not answered as a client's would be", hosts.A.Log, StringComparison.Ordinal);
        (int exit, _, string stderr) = await Ferry.RunTextAsync(Long, "host", "--listen", "127.0.0.1:0", "--warm-up-rounds", "21");
        Assert.Equal(125, exit);
        Assert.Contains("--warm-up-rounds must be between 0 and 20, not 21", stderr, StringComparison.Ordinal);
        Assert.Single(stderr.Trim().Split('\n'));
    }

    private static async Task<(string Digest, byte[] Console)> ReferenceAsync(string guest, string config, ulong stopAt)
    {
        (int exit, byte[] stdout, string stderr) = await Ferry.RunAsync(Long, "run", guest, "--memory", "64M", "--icount", "--no-idle-sleep",
            "--max-instructions", stopAt.ToString(), "--config", config, "--digest");
        Assert.True(exit == 0, stderr);
        string text = Encoding.ASCII.GetString(stdout);
        int at = text.LastIndexOf("digest: ", StringComparison.Ordinal);
        Assert.True(at >= 0, "no digest line");
        return (text[(at + 8)..].Trim(), stdout[..at]);
    }
}
