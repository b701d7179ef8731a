using System.Buffers.Binary;
using Ferry.Cli.Bench;
using Ferry.Migration.Metrics;
using Ferry.Migration.Strategies;
using SkiaSharp;

namespace Ferry.Cli.Tests;

/// <summary>
/// <see cref="BenchPlots"/> renders headless from synthetic results. Set FERRY_TEST_PLOTS_DIR to keep
/// the PNGs there and look at them.
/// </summary>
public sealed class BenchPlotsTests : IDisposable
{
    private static readonly string[] Bars =
    [
        "bars-total-time.png", "bars-downtime.png", "bars-bytes.png", "bars-faults.png",
        "bars-stall.png", "bars-slowdown.png", "bars-resident.png", "bars-stall-per-fault.png",
    ];

    private static readonly string[] Workloads = ["idle", "dirty", "kvstore"];
    private static readonly string[] FerryStrategies = ["precopy", "postcopy", "hybrid"];
    private static readonly string[] QemuStrategies = ["qemu-precopy", "qemu-postcopy"];

    private readonly string _dir;
    private readonly bool _keep;

    public BenchPlotsTests()
    {
        string? keep = Environment.GetEnvironmentVariable("FERRY_TEST_PLOTS_DIR");
        _keep = !string.IsNullOrEmpty(keep);
        _dir = _keep ? Path.Combine(keep!, Guid.NewGuid().ToString("N")[..8]) : Path.Combine(Path.GetTempPath(), "ferry-plots-" + Guid.NewGuid().ToString("N"));
    }

    public void Dispose()
    {
        if (!_keep && Directory.Exists(_dir))
        {
            Directory.Delete(_dir, recursive: true);
        }
    }

    [Fact]
    public void Every_chart_and_one_timeline_per_ferry_migration_are_valid_pngs()
    {
        BenchResults results = Synthetic();

        IReadOnlyList<string> files = BenchPlots.Write(results, _dir);

        string[] expectedTimelines =
        [
            .. Workloads.SelectMany(w => FerryStrategies.Select(s => $"timeline-{w}-{s}.png")),
        ];
        string[] expectedSpeeds = [.. Workloads.Select(w => $"guest-speed-{w}.png")];
        Assert.Equal(
            [.. Bars.Concat(expectedTimelines).Concat(expectedSpeeds).Order(StringComparer.Ordinal)],
            files.Select(f => Path.GetFileName(f)).Order(StringComparer.Ordinal).ToArray());
        foreach (string bar in Bars)
        {
            AssertPng(Path.Combine(_dir, bar), BenchPlots.BarWidth, BenchPlots.BarHeight);
        }

        foreach (string timeline in expectedTimelines)
        {
            AssertPng(Path.Combine(_dir, timeline), BenchPlots.TimelineWidth, BenchPlots.TimelineHeight);
        }

        foreach (string speed in expectedSpeeds)
        {
            AssertPng(Path.Combine(_dir, speed), BenchPlots.TimelineWidth, BenchPlots.BarHeight);
        }

        Assert.All(files, f => Assert.Equal(Path.GetFullPath(_dir), Path.GetDirectoryName(Path.GetFullPath(f))));
    }

    [Fact]
    public void Results_with_nothing_finished_still_render_every_chart()
    {
        BenchResults results = Synthetic() with
        {
            Runs =
            [
                new BenchRun { Strategy = "hybrid", Workload = "dirty", Repeat = 1, Outcome = BenchOutcome.Failed, Error = "connection refused" },
                new BenchRun { Strategy = "qemu-precopy", Workload = "dirty", Repeat = 1, Outcome = BenchOutcome.DidNotConverge, BytesOnWire = 900L << 20 },
            ],
        };

        IReadOnlyList<string> files = BenchPlots.Write(results, _dir);

        Assert.Equal(Bars.Length, files.Count);
        foreach (string f in files)
        {
            AssertPng(f, BenchPlots.BarWidth, BenchPlots.BarHeight);
        }
    }

    [Fact]
    public void No_runs_at_all_still_render_empty_charts()
    {
        IReadOnlyList<string> files = BenchPlots.Write(Synthetic() with { Runs = [] }, _dir);

        Assert.Equal(Bars.Length, files.Count);
        Assert.All(files, f => AssertPng(f, BenchPlots.BarWidth, BenchPlots.BarHeight));
    }

    [Fact]
    public async Task Replot_draws_an_earlier_runs_plots_from_its_results_json()
    {
        BenchResults results = Synthetic();
        Directory.CreateDirectory(_dir);
        string json = Path.Combine(_dir, "results.json");
        await File.WriteAllTextAsync(json, System.Text.Json.JsonSerializer.Serialize(results, BenchResults.Json));

        BenchResults read = await BenchCommand.ReadResultsAsync(json, CancellationToken.None);
        string[] again = [.. BenchCommand.Replot(read, Path.Combine(_dir, "again")).Select(Path.GetFileName).Order(StringComparer.Ordinal)!];

        string[] first = [.. BenchPlots.Write(results, Path.Combine(_dir, "first")).Select(Path.GetFileName).Order(StringComparer.Ordinal)!];
        Assert.Equal(first, again);
        Assert.Contains("guest-speed-kvstore.png", again);

        await File.WriteAllTextAsync(json, "{ not json");
        CliException e = await Assert.ThrowsAsync<CliException>(() => BenchCommand.ReadResultsAsync(json, CancellationToken.None));
        Assert.Contains("not a readable results.json", e.Message);
    }

    private static void AssertPng(string path, int width, int height)
    {
        Assert.True(File.Exists(path), path);
        byte[] bytes = File.ReadAllBytes(path);
        Assert.True(bytes.Length > 1000, $"{path}: {bytes.Length} bytes");
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A }, bytes[..8]);
        Assert.Equal("IHDR", System.Text.Encoding.ASCII.GetString(bytes, 12, 4));
        Assert.Equal(width, BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(16, 4)));
        Assert.Equal(height, BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(20, 4)));

        // Something was drawn: ScottPlot renders a blank figure rather than throw in some cases.
        using SKBitmap bitmap = SKBitmap.Decode(bytes);
        Assert.NotNull(bitmap);
        Assert.Equal((width, height), (bitmap.Width, bitmap.Height));
        int inked = 0;
        for (int y = 0; y < bitmap.Height; y += 4)
        {
            for (int x = 0; x < bitmap.Width; x += 4)
            {
                SKColor c = bitmap.GetPixel(x, y);
                inked += c.Red + c.Green + c.Blue < 600 ? 1 : 0;
            }
        }

        Assert.True(inked > bitmap.Width * bitmap.Height / 16 / 100, $"{path}: only {inked} dark samples");
    }

    // ----------------------------------------------------------------------------------------
    // Synthetic results: 3 repeats of 5 strategies x 3 workloads at 1 Gbit/s over 256 MiB, with
    // a pre-copy that was forced to stop and copy, a QEMU pre-copy that did not converge, a
    // failed hybrid repeat, Ferry runs whose slowdown was not measured and a negative slowdown (faster).

    internal static BenchResults Synthetic()
    {
        const long bandwidth = 1_000_000_000;
        var runs = new List<BenchRun>();
        var random = new Random(42);
        for (int repeat = 1; repeat <= 3; repeat++)
        {
            for (int w = 0; w < Workloads.Length; w++)
            {
                string workload = Workloads[w];
                foreach (string strategy in FerryStrategies)
                {
                    if (workload == "kvstore" && strategy == "hybrid" && repeat == 2)
                    {
                        runs.Add(new BenchRun { Strategy = strategy, Workload = workload, Repeat = repeat, Outcome = BenchOutcome.Failed, Error = "destination closed the connection" });
                        continue;
                    }

                    MigrationReport report = Report(strategy, w, bandwidth, random);
                    bool pre = strategy == "precopy";
                    runs.Add(new BenchRun
                    {
                        Strategy = strategy,
                        Workload = workload,
                        Repeat = repeat,
                        Outcome = pre && workload == "dirty" ? BenchOutcome.ForcedStopAndCopy : BenchOutcome.Completed,
                        TotalTimeMs = report.TotalTimeMs,
                        DowntimeMs = report.DowntimeMs,
                        BytesOnWire = report.BytesOnWire,
                        NetworkFaults = pre ? null : report.NetworkFaults.Count,
                        FaultStallMs = pre ? null : report.NetworkFaults.StallTotalMs,
                        FaultStallP99Ms = pre ? null : report.NetworkFaults.StallP99Ms,
                        Slowdown = workload == "idle" ? null : pre && workload == "kvstore" ? -0.03 * repeat : report.Guest.SlowdownDuring,
                        TimeToFullyResidentMs = pre ? null : report.TimeToFullyResidentMs,
                        Rounds = pre ? report.PrecopyRounds : null,
                        GuestMips = 80,
                        Report = report,
                    });
                }

                foreach (string strategy in QemuStrategies)
                {
                    bool pre = strategy == "qemu-precopy";
                    bool converged = !(pre && workload == "dirty");
                    double total = (pre ? 2600 + (w * 1500) : 2300) * (1 + (random.NextDouble() * 0.1));
                    runs.Add(new BenchRun
                    {
                        Strategy = strategy,
                        Workload = workload,
                        Repeat = repeat,
                        Outcome = converged ? BenchOutcome.Completed : BenchOutcome.DidNotConverge,
                        Error = converged ? null : "migration did not converge within 60 s",
                        TotalTimeMs = converged ? total : null,
                        DowntimeMs = converged ? (pre ? 250 : 30) * (1 + random.NextDouble()) : null,
                        BytesOnWire = (long)((pre ? 300 + (w * 200) : 270) * (1 + (random.NextDouble() * 0.05)) * 1048576),
                        Rounds = pre ? 4 + w : null,
                        GuestMips = 300,
                    });
                }
            }
        }

        return new BenchResults
        {
            StartedAt = DateTimeOffset.UnixEpoch,
            Command = "ferry bench --synthetic",
            Machine = new MachineInfo("synthetic", 2, "Linux", ".NET 10", "7.2"),
            BandwidthBitsPerSecond = bandwidth,
            MemoryBytes = 256UL << 20,
            DowntimeLimitMs = 300,
            Repeat = 3,
            Workloads = [.. Workloads.Select(w => new WorkloadInfo(w, w, "", w))],
            Runs = runs,
        };
    }

    /// <summary>A plausible report with a ~25 ms timeline of the migration's shape for its strategy.</summary>
    private static MigrationReport Report(string strategy, int heaviness, long bandwidth, Random random)
    {
        double jitter = 1 + (random.NextDouble() * 0.1);
        double bytesPerMs = bandwidth / 8.0 / 1000 * 0.9;
        double ips = 80e6 * (1 - (heaviness * 0.2));
        long memory = 256L << 20;
        (double pause, double downtime, long sent) = strategy switch
        {
            "precopy" => (memory * (1.2 + heaviness) / bytesPerMs * jitter, (8 + (heaviness * 250)) * jitter, (long)(memory * (1.25 + heaviness))),
            "postcopy" => (40 * jitter, 3 * jitter, memory + (memory / 50)),
            _ => (memory * 0.6 / bytesPerMs * jitter, 6 * jitter, memory + (memory / 8)),
        };
        double resume = pause + downtime;
        double remaining = strategy == "precopy" ? 0 : (memory + (memory / 50)) / bytesPerMs * (strategy == "postcopy" ? 1 : 0.45);
        double total = resume + remaining + 20;
        long faultsTotal = strategy == "precopy" ? 0 : (long)((strategy == "postcopy" ? 4000 : 800) * (1 + heaviness) * jitter);

        var points = new List<TimelinePoint>();
        ulong instructions = 0;
        double previous = 0;
        for (double t = 0; t <= total; t += 25 + random.NextDouble())
        {
            double slow = t < pause ? 1 - (heaviness * 0.05) : t < resume ? 0 : strategy == "precopy" ? 1 : 0.3 + (0.7 * Math.Min(1, (t - resume) / Math.Max(1, remaining)));
            instructions += (ulong)(ips * slow * (t - previous) / 1000);
            previous = t;
            long bytes = (long)Math.Min(sent, t < pause ? t * bytesPerMs * (strategy == "postcopy" ? 0 : 1) : (pause * bytesPerMs * (strategy == "postcopy" ? 0 : 1)) + ((t - pause) * bytesPerMs));
            if (t >= pause && t < resume)
            {
                bytes = (long)(pause * bytesPerMs * (strategy == "postcopy" ? 0 : 1));
            }

            long faults = t < resume ? 0 : (long)(faultsTotal * (1 - Math.Exp(-(t - resume) / Math.Max(1, remaining / 4))));
            points.Add(new TimelinePoint(t, bytes, faults, instructions));
        }

        double slowdown = strategy == "precopy" ? 0.02 + (heaviness * 0.03) : strategy == "postcopy" ? 0.3 + (heaviness * 0.1) : 0.12 + (heaviness * 0.05);
        return new MigrationReport
        {
            Id = "m-" + strategy,
            Vm = "vm",
            Strategy = StrategyPolicy.Parse(strategy),
            Outcome = MigrationOutcome.Completed,
            VmLocation = VmLocation.Destination,
            Options = new OptionsReport(bandwidth, 300, 30, 60000, 16, false, 4, 2, 100, 64 << 20, true, 0, "locality", 8, false, 64),
            StartedAt = DateTimeOffset.UnixEpoch,
            TotalTimeMs = total,
            DowntimeMs = downtime,
            DowntimeMethod = "shared-clock",
            PostCopyTimeMs = remaining,
            TimeToFullyResidentMs = remaining,
            BytesOnWire = sent,
            Bytes = new BytesReport(sent, 0, 0, 0, 0, sent),
            Pages = new PagesReport(memory / 4096, memory / 4096, 0, 0, 0, 0, 0, 0, memory / 4096),
            PrecopyRounds = strategy == "precopy" ? 3 + heaviness : 1,
            NetworkFaults = new FaultReport(faultsTotal, faultsTotal, faultsTotal * 0.4, 0.3, 1.2, 3),
            PagesArrived = new ArrivalReport(0, 0, faultsTotal, 0, 0),
            Prefetch = new PrefetchReport(0, 0, 0),
            Guest = new GuestReport(ips, ips * (1 - slowdown), ips, slowdown, 0),
            Timeline = new TimelineReport(pause, resume, points),
        };
    }
}
