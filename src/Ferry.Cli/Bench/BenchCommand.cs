using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Ferry.Cli.Client;
using Ferry.Host;
using Ferry.Machine.Board;
using Ferry.Migration.Metrics;
using Ferry.Migration.Protocol;
using Ferry.Migration.Strategies;
using Ferry.Migration.Transport;
using Spectre.Console;

namespace Ferry.Cli.Bench;

/// <summary>
/// `ferry bench`: the paper's comparison on this machine. For each workload and strategy it
/// runs real migrations between two host agent processes (and, when QEMU is installed, QEMU's
/// own pre-copy and post-copy on the same image, memory size and link cap), repeats them, and
/// writes a table of medians, results.json, results.csv and plots.
/// </summary>
internal static class BenchCommand
{
    /// <summary>
    /// Ferry's strategies as the bench runs them: every strategy the migration has
    /// (<see cref="StrategyPolicy.All"/>, by value), and after hybrid its variant hybrid-pass =
    /// hybrid after one live pass over memory (--live-passes 1).
    /// </summary>
    internal static readonly string[] FerryStrategies =
        [.. StrategyPolicy.All.Order().SelectMany(k => k == StrategyKind.Hybrid ? [StrategyPolicy.NameOf(k), HybridPass] : new[] { StrategyPolicy.NameOf(k) })];

    private const string HybridPass = "hybrid-pass";
    private static readonly string[] QemuStrategies = ["qemu-precopy", "qemu-postcopy", "qemu-postcopy-preempt"];

    /// <summary>
    /// Run only when named in --strategies: pre-copy with its convergence aids, each against the
    /// same run without it: precopy-ac (--auto-converge), precopy-delta (--delta), precopy-ac-delta (both).
    /// </summary>
    private static readonly string[] OptInStrategies = ["precopy-ac", "precopy-delta", "precopy-ac-delta"];

    public static Command Create()
    {
        var quick = new Option<bool>("--quick") { Description = "small VMs and one repeat: the whole comparison in a few minutes" };
        var output = new Option<string>("--out") { Description = "directory for results.json, results.csv and the plots", DefaultValueFactory = _ => "bench-results" };
        var workloads = new Option<string?>("--workloads") { Description = "comma-separated: idle, dirty-slow, dirty-fast, kvstore, verify, linux-idle, linux-kvstore (default: all), and, only when named, linux-kvserver (a TCP service and its client through the move; needs root or the ferry0 bridge, and /dev/net/tun)" };
        var strategies = new Option<string?>("--strategies") { Description = $"comma-separated: {string.Join(", ", FerryStrategies.Concat(QemuStrategies))} (default: all; QEMU's when installed), and, only when named, {string.Join(", ", OptInStrategies)} (pre-copy with auto-converge, delta pages, both)" };
        var repeat = new Option<int?>("--repeat") { Description = "migrations per workload and strategy (default 3, 1 with --quick)" };
        var bandwidth = new Option<string>("--bandwidth") { Description = "emulated link rate, for Ferry and QEMU alike", DefaultValueFactory = _ => "1Gbit" };
        var memory = new Option<string?>("--memory") { Description = "guest RAM (default 256M, 64M with --quick)" };
        var downtime = new Option<string>("--downtime-limit") { Description = "pre-copy's downtime limit, for Ferry and QEMU alike", DefaultValueFactory = _ => "20ms" };
        var link = new Option<string>("--link")
        {
            Description = "shaper: each side's own rate limiter on loopback (default); netns: the destinations in a network namespace behind a veth pair whose rate the kernel sets (tc htb), with no rate limiter of their own (needs root)",
            DefaultValueFactory = _ => "shaper",
        };
        link.AcceptOnlyFromAmong("shaper", "netns");
        var channels = new Option<int>("--channels") { Description = "connections for Ferry's bulk pages, 1..8 (as QEMU's multifd channels)", DefaultValueFactory = _ => 1 };
        var firstMoves = new Option<bool>("--first-moves")
        {
            Description = "measure the hosts' first moves too: skip the unmeasured move per strategy that otherwise runs first (the hosts' and this client's API paths compiled)",
        };
        var replot = new Option<string?>("--replot") { Description = "run nothing: draw the plots (into --out) and print the table again from an earlier run's results.json" };
        var cmd = new Command("bench", "Compare pre-copy, post-copy and hybrid (and QEMU's own) on real migrations between two local host agents")
        {
            quick, output, workloads, strategies, repeat, bandwidth, memory, downtime, link, channels, firstMoves, replot,
        };
        cmd.SetAction((ParseResult p, CancellationToken ct) => Cli.GuardAsync(async () =>
        {
            if (p.GetValue(replot) is string earlier)
            {
                BenchResults old = await ReadResultsAsync(earlier, ct);
                IReadOnlyList<string> drawn = Replot(old, p.GetValue(output)!);
                AnsiConsole.Write(Table(old, [.. old.Runs.Select(r => r.Strategy).Distinct()]));
                AnsiConsole.MarkupLine($"drew {drawn.Count} plots in {Markup.Escape(p.GetValue(output)!)} from {Markup.Escape(earlier)}");
                return 0;
            }

            bool isQuick = p.GetValue(quick);
            var settings = new Settings(
                isQuick,
                p.GetValue(output)!,
                [.. Workload.All(isQuick).Where(w => Selected(p.GetValue(workloads), w.Name)),
                    .. Workload.OptIn().Where(w => p.GetValue(workloads) is not null && Selected(p.GetValue(workloads), w.Name))],
                [.. FerryStrategies.Concat(QemuStrategies).Where(s => Selected(p.GetValue(strategies), s))
                    .Concat(OptInStrategies.Where(s => p.GetValue(strategies) is not null && Selected(p.GetValue(strategies), s)))],
                p.GetValue(repeat) ?? (isQuick ? 1 : 3),
                LinkShaper.ParseRate(p.GetValue(bandwidth)!),
                MachineConfig.ParseSize(p.GetValue(memory) ?? (isQuick ? "64M" : "256M")),
                Common.ParseDuration(p.GetValue(downtime)!),
                string.Join(' ', Environment.GetCommandLineArgs().Skip(1)),
                p.GetValue(link) == "netns",
                p.GetValue(channels))
            {
                WarmUpMoves = !p.GetValue(firstMoves),
            };
            if (settings.Channels is < 1 or > Ferry.Migration.Protocol.Hello.MaxChannels)
            {
                throw new CliException($"--channels must be 1..{Ferry.Migration.Protocol.Hello.MaxChannels}, not {settings.Channels}");
            }

            if (settings.Workloads.Count == 0 || settings.Strategies.Length == 0)
            {
                throw new CliException("no workload or no strategy selected");
            }

            return await RunAsync(settings, ct);
        }));
        return cmd;
    }

    /// <summary>Reads an earlier run's results.json; a missing or malformed file is the user's error, in one line.</summary>
    internal static async Task<BenchResults> ReadResultsAsync(string path, CancellationToken ct)
    {
        try
        {
            await using FileStream file = File.OpenRead(path);
            return await JsonSerializer.DeserializeAsync<BenchResults>(file, BenchResults.Json, ct) ?? throw new JsonException("null");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException or NotSupportedException)
        {
            throw new CliException($"--replot: {path} is not a readable results.json of ferry bench ({e.Message})");
        }
    }

    /// <summary>The plots of an earlier run, drawn again into <paramref name="directory"/> (after a change to how they are drawn).</summary>
    internal static IReadOnlyList<string> Replot(BenchResults results, string directory)
    {
        Directory.CreateDirectory(directory);
        return BenchPlots.Write(results, directory);
    }

    private static bool Selected(string? list, string name)
        => list is null || list.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Contains(name, StringComparer.OrdinalIgnoreCase);

    private sealed record Settings(bool Quick, string Output, List<Workload> Workloads, string[] Strategies, int Repeat,
        long Bandwidth, ulong Memory, TimeSpan DowntimeLimit, string Command, bool KernelLink, int Channels)
    {
        /// <summary>With a kernel link: the destinations' namespace, their address, and the htb class of urgent packets.</summary>
        public NetnsLink? Link { get; set; }

        /// <summary>The rate each side's own limiter is given: the link's, or none when the kernel's link sets it.</summary>
        public long OwnLimiter => KernelLink ? 0 : Bandwidth;

        public TimeSpan WarmUp => Quick ? TimeSpan.FromSeconds(1.5) : TimeSpan.FromSeconds(4);

        /// <summary>One unmeasured move per strategy before the measured ones (<c>--first-moves</c> turns it off).</summary>
        public bool WarmUpMoves { get; init; } = true;

        /// <summary>How long a QEMU migration may try before it counts as not converging.</summary>
        public TimeSpan QemuTimeout => Quick ? TimeSpan.FromSeconds(8) : TimeSpan.FromSeconds(60);
    }

    /// <summary>
    /// A guest and its configuration (the same patched image runs under Ferry and QEMU). Guest
    /// "linux": the built-in kernel and initramfs on OpenSBI, the configuration becoming
    /// ferry.KEY=VALUE on the kernel command line; the warm-up starts at its ready line.
    /// </summary>
    private sealed record Workload(string Name, string Guest, string Config, string Description)
    {
        public bool Linux => Guest == GuestCatalog.Linux;

        /// <summary>A service with a network card, a disk and a client on the host (<see cref="BenchClient"/>).</summary>
        public bool Networked { get; init; }

        /// <summary>Run only when named in --workloads.</summary>
        public static IEnumerable<Workload> OptIn() =>
        [
            new("linux-kvserver", GuestCatalog.Linux, "workload=kvserver",
                $"Linux 6.1 on OpenSBI with a network card and a disk, the kvserver workload answering a client on the host ({BenchClient.Rate:0} requests/s over {BenchClient.Connections} TCP connections)")
            {
                Networked = true,
            },
        ];

        public static IEnumerable<Workload> All(bool quick) =>
        [
            new("idle", "idle", "interval_ms=100,pages=4", "heartbeat every 100 ms, touching 4 pages"),
            new("dirty-slow", "dirty", quick ? "size_mib=16,rate=4" : "size_mib=64,rate=8", "rewrites its region at a quarter of the link rate (pages/ms of guest time)"),
            new("dirty-fast", "dirty", quick ? "size_mib=16,rate=0" : "size_mib=64,rate=0", "rewrites its region as fast as it runs (far above the link rate)"),
            new("kvstore", "kvstore", quick ? "table_mib=40,report_every=20000" : "table_mib=192,report_every=20000", "hash table, 95% of operations on a 2% hot set"),
            new("verify", "verify", quick ? "size_mib=16" : "size_mib=32", "fills and checks a region pass after pass"),
            new("linux-idle", GuestCatalog.Linux, "workload=idle", "Linux 6.1 on OpenSBI, /init asleep (a heartbeat line a second)"),
            new("linux-kvstore", GuestCatalog.Linux, quick ? "workload=kvstore,table_mib=32,report_every=20000" : "workload=kvstore,table_mib=128,report_every=20000",
                "Linux 6.1 on OpenSBI, kvstore as a Linux process over an anonymous mapping"),
        ];
    }

    private static async Task<int> RunAsync(Settings s, CancellationToken ct)
    {
        Directory.CreateDirectory(s.Output);
        bool qemu = QemuMigration.Available;
        string[] strategies = qemu ? s.Strategies : [.. s.Strategies.Where(x => !x.StartsWith("qemu", StringComparison.Ordinal))];
        if (!qemu && strategies.Length != s.Strategies.Length)
        {
            AnsiConsole.MarkupLine("[yellow]qemu-system-riscv64 is not installed: QEMU's rows are left out[/]");
        }

        string? noNetwork = null;
        if (s.Workloads.Any(w => w.Networked))
        {
            try
            {
                await HostBridge.EnsureAsync(ct);
            }
            catch (CliException e)
            {
                noNetwork = e.Message;
                AnsiConsole.MarkupLine($"[yellow]the networked workloads fail: {Markup.Escape(e.Message)}[/]");
            }
        }

        await using NetnsLink? kernelLink = s.KernelLink ? await NetnsLink.CreateAsync(s.Bandwidth, ct) : null;
        s.Link = kernelLink;
        AnsiConsole.MarkupLine($"[bold]ferry bench[/]: {s.Workloads.Count} workloads x {strategies.Length} strategies x {s.Repeat}, "
            + $"{LinkShaper.Format(s.Bandwidth)}/s link ({(kernelLink is null ? "each side's own limiter" : $"the kernel's: veth + tc htb, namespace {kernelLink.Namespace}")}), "
            + $"{s.Memory >> 20} MiB guests, pre-copy downtime limit {s.DowntimeLimit.TotalMilliseconds} ms");
        string[] hostOptions = kernelLink is null ? [] : ["--fault-priority", NetnsLink.UrgentClass.ToString(CultureInfo.InvariantCulture)];
        Task<LocalHost> startA = LocalHost.StartAsync("A", ct, extra: hostOptions);
        Task<LocalHost> startB = kernelLink is null ? LocalHost.StartAsync("B", ct)
            : LocalHost.StartAsync("B", ct, NetnsLink.DestinationAddress, kernelLink.Wrap, hostOptions);
        await using LocalHost a = await startA;
        await using LocalHost b = await startB;
        using var hostA = new HostClient(a.Api, null);
        using var hostB = new HostClient(b.Api, null);

        int warmUpMoves = s.WarmUpMoves ? await WarmUpMovesAsync(s, hostA, hostB, strategies, ct) : 0;
        var runs = new List<BenchRun>();
        int total = s.Workloads.Count * strategies.Length * s.Repeat;
        await AnsiConsole.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
            .StartAsync(async context =>
            {
                ProgressTask progress = context.AddTask("benchmark", maxValue: total);
                int n = 0;
                for (int r = 1; r <= s.Repeat; r++)
                {
                    foreach (Workload w in s.Workloads)
                    {
                        foreach (string strategy in strategies)
                        {
                            ct.ThrowIfCancellationRequested();
                            if (w.Networked && noNetwork is not null)
                            {
                                runs.Add(new BenchRun { Strategy = strategy, Workload = w.Name, Repeat = r, Outcome = BenchOutcome.Failed, Error = noNetwork });
                                progress.Increment(1);
                                continue;
                            }

                            progress.Description = $"{w.Name} / {strategy} ({r}/{s.Repeat})";
                            BenchRun run = strategy.StartsWith("qemu-", StringComparison.Ordinal)
                                ? await RunQemuAsync(s, w, strategy, r, ct)
                                : w.Networked ? await RunFerryNetworkedAsync(s, hostA, hostB, w, strategy, r, $"b{++n}-{w.Name}-{strategy}", ct)
                                : await RunFerryAsync(s, hostA, hostB, w, strategy, r, $"b{++n}-{w.Name}-{strategy}", ct);
                            runs.Add(run);
                            progress.Increment(1);
                        }
                    }
                }
            });

        LinuxBootResult? boot = null;
        if (s.Workloads.Any(w => w.Linux))
        {
            AnsiConsole.MarkupLine("[grey]timing Linux boots to ready (Ferry, and QEMU with its own OpenSBI) ...[/]");
            boot = await LinuxBootBench.RunAsync(s.Memory, s.Repeat, qemu, ct);
        }

        var results = new BenchResults
        {
            LinuxBoot = boot,
            StartedAt = DateTimeOffset.UtcNow,
            Command = "ferry " + s.Command,
            Machine = DescribeMachine(),
            BandwidthBitsPerSecond = s.Bandwidth,
            Link = s.KernelLink ? "netns" : "shaper",
            MemoryBytes = s.Memory,
            DowntimeLimitMs = s.DowntimeLimit.TotalMilliseconds,
            Repeat = s.Repeat,
            Workloads = [.. s.Workloads.Select(w => new WorkloadInfo(w.Name, w.Guest, w.Config, w.Description))],
            Runs = runs,
            WarmUpMoves = warmUpMoves,
        };
        string json = Path.Combine(s.Output, "results.json");
        await File.WriteAllTextAsync(json, JsonSerializer.Serialize(results, BenchResults.Json), CancellationToken.None);
        string csv = Path.Combine(s.Output, "results.csv");
        await File.WriteAllTextAsync(csv, Csv(runs), CancellationToken.None);
        IReadOnlyList<string> plots = BenchPlots.Write(results, s.Output);
        AnsiConsole.Write(Table(results, strategies));
        if (runs.Any(r => r.ClientRequests is not null))
        {
            AnsiConsole.Write(ClientTable(results, strategies));
        }

        if (boot is not null)
        {
            AnsiConsole.Write(BootTable(boot));
        }

        AnsiConsole.MarkupLine($"wrote {Markup.Escape(json)}, {Markup.Escape(csv)} and {plots.Count} plots in {Markup.Escape(s.Output)}");
        return 0;
    }

    private static async Task<BenchRun> RunFerryAsync(Settings s, HostClient a, HostClient b, Workload w, string strategy, int repeat, string name, CancellationToken ct)
    {
        try
        {
            if (w.Linux)
            {
                LinuxBootFiles files = GuestCatalog.ResolveLinux(null, null, null, null, w.Config);
                await a.StartVmAsync(new StartVmRequest { Name = name, Linux = GuestCatalog.Request(files), MemoryBytes = s.Memory }, ct);
                await a.WaitForConsoleLineAsync(name, $"'{QemuLinuxGuest.ReadyLine}'", line => line == QemuLinuxGuest.ReadyLine, QemuLinuxGuest.BootTimeout, ct);
            }
            else
            {
                GuestImage image = GuestCatalog.Resolve(w.Guest, w.Config);
                await a.StartVmAsync(new StartVmRequest { Name = name, Image = Convert.ToBase64String(image.Bytes), MemoryBytes = s.Memory }, ct);
            }

            await Task.Delay(s.WarmUp, ct);
            MigrationReport r = await MigrationDriver.RunAsync(a, b, name, Request(s, strategy), null, ct);
            return FerryRun(s, w, strategy, repeat, r);
        }
        catch (CliException e)
        {
            return new BenchRun { Strategy = strategy, Workload = w.Name, Repeat = repeat, Outcome = BenchOutcome.Failed, Error = e.Message };
        }
        finally
        {
            await TryRemoveAsync(b, name);
            await TryRemoveAsync(a, name);
        }
    }

    /// <summary>
    /// One unmeasured move of a small VM per Ferry strategy of the run, from A to B, as a
    /// benchmark's warm-up iterations: a host's warm-up migrations run in-process, so a host's first
    /// move through its API still compiles the API's paths (the request, the incoming migration's
    /// slot, the statuses), and so does this client's polling, beside the measured move (a host's
    /// first move is measured with <c>--first-moves</c>, and each report's <c>runtime.sourceJit</c>
    /// and <c>destinationJit</c> say what the JIT compiled in it). Returns how many moves ran.
    /// </summary>
    private static async Task<int> WarmUpMovesAsync(Settings s, HostClient a, HostClient b, string[] strategies, CancellationToken ct)
    {
        string[] ferry = [.. strategies.Where(x => !x.StartsWith("qemu-", StringComparison.Ordinal))];
        if (ferry.Length == 0)
        {
            return 0;
        }

        AnsiConsole.MarkupLine($"[grey]warm-up: one unmeasured move per strategy ({ferry.Length}; --first-moves skips them) ...[/]");
        GuestImage image = GuestCatalog.Resolve("dirty", "size_mib=8,rate=4"); // slow enough that pre-copy converges
        int moved = 0;
        foreach (string strategy in ferry)
        {
            string name = $"warm-up-{strategy}";
            try
            {
                await a.StartVmAsync(new StartVmRequest { Name = name, Image = Convert.ToBase64String(image.Bytes), MemoryBytes = 32UL << 20 }, ct);
                await Task.Delay(TimeSpan.FromMilliseconds(300), ct);
                MigrationReport r = await MigrationDriver.RunAsync(a, b, name, Request(s, strategy), null, ct);
                moved += r.Outcome == MigrationOutcome.Completed ? 1 : 0;
            }
            catch (CliException e)
            {
                AnsiConsole.MarkupLine($"[yellow]warm-up move ({Markup.Escape(strategy)}) failed: {Markup.Escape(e.Message)}[/]");
            }
            finally
            {
                await TryRemoveAsync(b, name);
                await TryRemoveAsync(a, name);
            }
        }

        return moved;
    }

    /// <summary>The migration a bench strategy names, as a host agent is asked for it.</summary>
    private static MigrateRequest Request(Settings s, string strategy) => new()
    {
        Destination = "",
        Token = "",
        Strategy = StrategyPolicy.NameOf(BaseStrategy(strategy)),
        LivePasses = strategy == HybridPass ? 1 : null,
        AutoConverge = strategy.StartsWith("precopy-ac", StringComparison.Ordinal) ? true : null,
        DeltaCacheBytes = strategy.EndsWith("-delta", StringComparison.Ordinal) ? Ferry.Migration.MigrationOptions.DefaultDeltaCacheBytes : null,
        Bandwidth = s.OwnLimiter > 0 ? s.OwnLimiter.ToString(CultureInfo.InvariantCulture) : "unlimited", // "0" is not a bandwidth
        DowntimeLimitMs = s.DowntimeLimit.TotalMilliseconds,
        MaxLiveTimeMs = (s.Quick ? TimeSpan.FromSeconds(15) : TimeSpan.FromSeconds(60)).TotalMilliseconds,
        Channels = s.Channels,
    };

    /// <summary>The strategy a bench strategy runs: its name, or the name its variant begins with (hybrid-pass, precopy-ac...).</summary>
    private static StrategyKind BaseStrategy(string benchStrategy)
        => StrategyPolicy.All.Single(k => benchStrategy == StrategyPolicy.NameOf(k) || benchStrategy.StartsWith(StrategyPolicy.NameOf(k) + "-", StringComparison.Ordinal));

    private static BenchRun FerryRun(Settings s, Workload w, string strategy, int repeat, MigrationReport r)
    {
        // A strategy that never resumes before all its pages (pre-copy) has no faults to report,
        // and did not converge when its last round did not fit the limit (it stopped and copied).
        bool faults = StrategyPolicy.For(r.Strategy).MayResumeBeforeAllPages;
        bool converged = faults || r.Rounds.Count == 0 || r.Rounds[^1].ExpectedDowntimeMs <= s.DowntimeLimit.TotalMilliseconds;
        return new BenchRun
        {
            Strategy = strategy,
            Workload = w.Name,
            Repeat = repeat,
            Outcome = r.Outcome switch { MigrationOutcome.Completed => converged ? BenchOutcome.Completed : BenchOutcome.ForcedStopAndCopy, MigrationOutcome.Cancelled => BenchOutcome.Cancelled, _ => BenchOutcome.Failed },
            Error = r.Error,
            TotalTimeMs = r.TotalTimeMs,
            DowntimeMs = r.DowntimeMs,
            BytesOnWire = r.BytesOnWire,
            NetworkFaults = !faults ? null : r.NetworkFaults.Count,
            FaultStallMs = !faults ? null : r.NetworkFaults.StallTotalMs,
            FaultStallP99Ms = !faults ? null : r.NetworkFaults.StallP99Ms,
            FaultStallP50Ms = !faults ? null : r.NetworkFaults.StallP50Ms,
            StallPerFaultMs = !faults || r.NetworkFaults.Count == 0 ? null : r.NetworkFaults.StallTotalMs / r.NetworkFaults.Count,
            GuestMipsDuring = r.Guest.IpsDuring / 1e6,
            GuestMipsPostCopy = r.Guest.IpsPostCopy / 1e6,
            Slowdown = r.Guest.SlowdownDuring,
            TimeToFullyResidentMs = !faults ? null : r.TimeToFullyResidentMs,
            Rounds = !faults ? r.PrecopyRounds : null,
            WorkingSetBytes = r.WorkingSet?.Bytes,
            GuestMips = r.Guest.IpsBefore / 1e6,
            LinkLimitMs = s.Bandwidth > 0 ? r.Pages.MemoryNonZero * 4096.0 * 8 / s.Bandwidth * 1000 : null,
            Report = r,
        };
    }

    /// <summary>
    /// A Ferry row of a networked workload: the VM with a network card on a TAP on the bridge
    /// (the same MAC on both sides) and a raw disk both host agents open, migrated between the
    /// two agents like every other Ferry row; the destination agent makes its own TAP on the
    /// bridge. The client runs as for QEMU's rows.
    /// </summary>
    private static async Task<BenchRun> RunFerryNetworkedAsync(Settings s, HostClient a, HostClient b, Workload w, string strategy, int repeat, string name, CancellationToken ct)
    {
        if (s.KernelLink)
        {
            return new BenchRun { Strategy = strategy, Workload = w.Name, Repeat = repeat, Outcome = BenchOutcome.Failed, Error = "a networked VM's destination in the netns link's namespace has no TAP on the bridge: run linux-kvserver with --link shaper" };
        }

        NetworkGuest guest = NetworkGuest.Default;
        LinuxBootFiles files = GuestCatalog.ResolveLinux(null, null, $"{LinuxBoot.DefaultCommandLine} {guest.KernelIpArgument}", null, w.Config);
        string disk = Path.Combine(Path.GetTempPath(), $"ferry-bench-{Environment.ProcessId}-{name}.img");
        using var client = new BenchClient(guest);
        try
        {
            await using (FileStream f = File.Create(disk))
            {
                f.SetLength(16 << 20);
            }

            await a.StartVmAsync(new StartVmRequest { Name = name, Linux = GuestCatalog.Request(files), MemoryBytes = s.Memory, Disk = disk, Net = $"tap,mac={guest.Mac}" }, ct);
            await a.WaitForConsoleLineAsync(name, $"'{BenchClient.ListeningLine}'", line => line == BenchClient.ListeningLine, QemuLinuxGuest.BootTimeout, ct);
            await client.StartAsync(ct);
            await Task.Delay(s.WarmUp, ct);
            MigrationReport r = await MigrationDriver.RunAsync(a, b, name, Request(s, strategy), null, ct);
            await Task.Delay(BenchClient.After, ct);
            KvClientResult c = (await client.StopAsync())!;
            return BenchClient.WithClient(FerryRun(s, w, strategy, repeat, r), c, r.StartedAt,
                r.Timeline.PauseAtMs > 0 ? r.StartedAt.AddMilliseconds(r.Timeline.PauseAtMs) : null,
                r.Timeline.ResumeAtMs > 0 ? r.StartedAt.AddMilliseconds(r.Timeline.ResumeAtMs) : null,
                r.StartedAt.AddMilliseconds(r.TotalTimeMs));
        }
        catch (Exception e) when (e is CliException or IOException or TimeoutException)
        {
            return new BenchRun { Strategy = strategy, Workload = w.Name, Repeat = repeat, Outcome = BenchOutcome.Failed, Error = e.Message };
        }
        finally
        {
            try
            {
                await client.StopAsync();
            }
            catch (Exception e) when (e is IOException or TimeoutException)
            {
                // reported above
            }

            await TryRemoveAsync(b, name);
            await TryRemoveAsync(a, name);
            File.Delete(disk);
        }
    }

    private static async Task TryRemoveAsync(HostClient host, string name)
    {
        try
        {
            await host.StopAsync(name, CancellationToken.None);
            await host.RemoveAsync(name, CancellationToken.None);
        }
        catch (CliException)
        {
            // not there (it left, or never arrived)
        }
    }

    private static async Task<BenchRun> RunQemuAsync(Settings s, Workload w, string strategy, int repeat, CancellationToken ct)
    {
        byte[] elf = [];
        QemuLinuxGuest? linux = null;
        if (w.Linux)
        {
            LinuxBootFiles files = GuestCatalog.ResolveLinux(null, null, w.Networked ? $"{LinuxBoot.DefaultCommandLine} {NetworkGuest.Default.KernelIpArgument}" : null, null, w.Config);
            linux = new QemuLinuxGuest(LinuxBoot.ReadKernelImage(files.Kernel, files.KernelName), files.Initrd!, files.CommandLine);
        }
        else
        {
            elf = GuestCatalog.Resolve(w.Guest, w.Config).Bytes.ToArray();
        }

        string mode = strategy["qemu-".Length..];
        var spec = new QemuMigrationSpec(w.Name, elf, s.Memory, mode, s.OwnLimiter, s.DowntimeLimit, s.WarmUp, s.QemuTimeout)
        {
            DestinationWrap = s.Link?.Wrap,
            DestinationAddress = s.Link is null ? "127.0.0.1" : NetnsLink.DestinationAddress,
            Linux = linux,
        };
        if (!w.Networked)
        {
            return QemuRun(s, w, strategy, repeat, await QemuMigration.RunAsync(spec, ct));
        }

        try
        {
            (QemuRunResult q, KvClientResult? c) = await BenchClient.RunQemuAsync(spec, NetworkGuest.Default, ct);
            BenchRun run = QemuRun(s, w, strategy, repeat, q);
            DateTimeOffset now = DateTimeOffset.UtcNow;
            return c is null ? run : BenchClient.WithClient(run, c, q.Marks?.Started ?? now, q.Marks?.Stopped, q.Marks?.Resumed, q.Marks?.Completed ?? now);
        }
        catch (Exception e) when (e is IOException or TimeoutException)
        {
            return new BenchRun { Strategy = strategy, Workload = w.Name, Repeat = repeat, Outcome = BenchOutcome.Failed, Error = $"the client could not reach the guest: {e.Message}" };
        }
    }

    private static BenchRun QemuRun(Settings s, Workload w, string strategy, int repeat, QemuRunResult q)
    {
        return new BenchRun
        {
            Strategy = strategy,
            Workload = w.Name,
            Repeat = repeat,
            Outcome = q.Completed ? BenchOutcome.Completed : q.Error?.Contains("converge", StringComparison.OrdinalIgnoreCase) == true ? BenchOutcome.DidNotConverge : BenchOutcome.Failed,
            Error = q.Error,
            TotalTimeMs = q.Completed ? q.TotalTimeMs : null,
            DowntimeMs = q.Completed ? q.DowntimeMs : null,
            BytesOnWire = q.BytesOnWire,
            NetworkFaults = q.NetworkFaults,
            BlocktimeMs = q.BlocktimeMs,
            FaultStallMs = q.BlocktimeMs,
            StallPerFaultMs = q.BlocktimeMs is double b && q.NetworkFaults is > 0 ? b / q.NetworkFaults.Value : null,
            Rounds = q.Rounds,
            GuestMips = q.GuestMips,
            GuestMipsDuring = q.GuestMipsDuring,
            Slowdown = q.GuestMips is > 0 && q.GuestMipsDuring is double during ? 1 - (during / q.GuestMips.Value) : null,
            LinkLimitMs = s.Bandwidth > 0 && q.Completed ? q.BytesOnWire * 8.0 / s.Bandwidth * 1000 : null,
        };
    }

    private static MachineInfo DescribeMachine()
    {
        string cpu = "unknown";
        try
        {
            cpu = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? cpu;
        }
        catch (IOException)
        {
        }

        return new MachineInfo(cpu, Environment.ProcessorCount, RuntimeInformation.OSDescription, RuntimeInformation.FrameworkDescription, QemuVersion());
    }

    private static string? QemuVersion()
    {
        if (!QemuMigration.Available)
        {
            return null;
        }

        using var p = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("qemu-system-riscv64", "--version") { RedirectStandardOutput = true })!;
        string first = p.StandardOutput.ReadLine() ?? "";
        p.WaitForExit();
        return first.Trim();
    }

    private static string Csv(List<BenchRun> runs)
    {
        var sb = new StringBuilder("strategy,workload,repeat,outcome,totalTimeMs,downtimeMs,bytesOnWire,networkFaults,faultStallMs,faultStallP50Ms,faultStallP99Ms,stallPerFaultMs,slowdown,timeToFullyResidentMs,rounds,workingSetBytes,guestMips,guestMipsDuring,linkLimitMs,clientOutageMs,clientP99DuringMs,clientFailedRequests,error\n");
        foreach (BenchRun r in runs)
        {
            sb.AppendJoin(',', r.Strategy, r.Workload, r.Repeat, EnumNames.Kebab(r.Outcome), F(r.TotalTimeMs), F(r.DowntimeMs), r.BytesOnWire, r.NetworkFaults, F(r.FaultStallMs),
                F(r.FaultStallP50Ms), F(r.FaultStallP99Ms), F(r.StallPerFaultMs), F(r.Slowdown), F(r.TimeToFullyResidentMs), r.Rounds, r.WorkingSetBytes, F(r.GuestMips), F(r.GuestMipsDuring), F(r.LinkLimitMs),
                F(r.ClientOutageMs), F(r.ClientLatencyMs?.During?.P99), r.ClientFailedRequests,
                r.Error is null ? "" : "\"" + r.Error.Replace("\"", "\"\"", StringComparison.Ordinal).ReplaceLineEndings(" ") + "\"");
            sb.Append('\n');
        }

        return sb.ToString();
    }

    private static string F(double? v) => v?.ToString("0.###", CultureInfo.InvariantCulture) ?? "";

    /// <summary>Medians with min-max; "n/a" says why a figure is missing rather than leaving a blank.</summary>
    private static Table Table(BenchResults results, string[] strategies)
    {
        var table = new Table().Title($"medians (min-max) over {results.Repeat} run(s), {LinkShaper.Format(results.BandwidthBitsPerSecond)}/s link")
            .AddColumns("workload", "strategy", "total ms", "link limit ms", "downtime ms", "wire MiB", "faults", "stall ms", "µs/fault", "slowdown", "resident ms", "guest MIPS");
        foreach (WorkloadInfo w in results.Workloads)
        {
            foreach (string strategy in strategies)
            {
                List<BenchRun> runs = [.. results.Runs.Where(r => r.Workload == w.Name && r.Strategy == strategy)];
                if (runs.Count == 0)
                {
                    continue;
                }

                bool qemu = strategy.StartsWith("qemu", StringComparison.Ordinal);
                bool pre = strategy.EndsWith("precopy", StringComparison.Ordinal);
                string outcome = runs.All(r => r.Outcome == BenchOutcome.Completed) ? "" : $" [red]{string.Join(", ", runs.Select(r => EnumNames.Kebab(r.Outcome)).Distinct())}[/]";
                table.AddRow(
                    Markup.Escape(w.Name),
                    Markup.Escape(strategy) + outcome,
                    Cell(runs, r => r.TotalTimeMs, "not finished"),
                    Cell(runs, r => r.LinkLimitMs, "no cap"),
                    Cell(runs, r => r.DowntimeMs, "not finished"),
                    Cell(runs, r => r.BytesOnWire / 1048576.0, "n/a"),
                    Cell(runs, r => r.NetworkFaults, pre ? "none (pre-copy)" : "n/a"),
                    Cell(runs, r => r.FaultStallMs, pre ? "none (pre-copy)" : "n/a"),
                    Cell(runs, r => r.StallPerFaultMs * 1000, pre ? "none (pre-copy)" : "n/a"),
                    Cell(runs, r => r.Slowdown * 100, qemu ? "no progress lines" : "n/a", "%"),
                    Cell(runs, r => r.TimeToFullyResidentMs, qemu ? "not reported by QEMU" : pre ? "at resume" : "n/a"),
                    Cell(runs, r => r.GuestMips, "not measured"));
            }
        }

        return table;
    }

    /// <summary>What the kvserver's client saw: the outage, latency before/during/after the move, failures.</summary>
    private static Table ClientTable(BenchResults results, string[] strategies)
    {
        var table = new Table().Title($"clients during the move ({BenchClient.Rate:0} requests/s, {BenchClient.Connections} connections), medians (min-max) over {results.Repeat} run(s)")
            .AddColumns("workload", "strategy", "outage ms", "downtime ms", "p50/p99 before", "p50/p99 during", "p50/p99 after", "failed", "broken conns");
        foreach (WorkloadInfo w in results.Workloads)
        {
            foreach (string strategy in strategies)
            {
                List<BenchRun> runs = [.. results.Runs.Where(r => r.Workload == w.Name && r.Strategy == strategy && r.ClientRequests is not null)];
                if (runs.Count == 0)
                {
                    continue;
                }

                string Phase(Func<PhaseLatencies, LatencyPercentiles?> pick)
                    => Cell(runs, r => r.ClientLatencyMs is { } l ? pick(l)?.P50 : null, "none") + " / " + Cell(runs, r => r.ClientLatencyMs is { } l ? pick(l)?.P99 : null, "none");

                table.AddRow(
                    Markup.Escape(w.Name),
                    Markup.Escape(strategy),
                    Cell(runs, r => r.ClientOutageMs, "n/a"),
                    Cell(runs, r => r.DowntimeMs, "not finished"),
                    Phase(l => l.Before),
                    Phase(l => l.During),
                    Phase(l => l.After),
                    Cell(runs, r => r.ClientFailedRequests, "n/a"),
                    Cell(runs, r => r.ClientBrokenConnections, "n/a"));
            }
        }

        return table;
    }

    private static Table BootTable(LinuxBootResult boot)
    {
        var table = new Table().Title($"Linux boot to '{QemuLinuxGuest.ReadyLine}', medians (min-max) of {boot.Ferry.Count}")
            .AddColumns("machine", "seconds", "instructions (M)");
        table.AddRow("Ferry", Median(boot.Ferry.Select(b => (double?)b.Seconds)), Median(boot.Ferry.Select(b => b.Instructions / 1e6)));
        if (boot.Qemu is not null && boot.QemuIcount is not null)
        {
            table.AddRow("QEMU (TCG; instructions under -icount shift=0)", Median(boot.Qemu.Select(b => (double?)b.Seconds)), Median(boot.QemuIcount.Select(b => b.Instructions / 1e6)));
        }

        return table;
    }

    private static string Median(IEnumerable<double?> values) => Cell(values, "n/a");

    private static string Cell(List<BenchRun> runs, Func<BenchRun, double?> metric, string missing, string unit = "")
        => Cell(runs.Select(metric), missing, unit);

    /// <summary>The median with min-max of the values given (nulls left out), or <paramref name="missing"/>.</summary>
    private static string Cell(IEnumerable<double?> given, string missing, string unit = "")
    {
        double[] values = [.. given.Where(v => v is not null).Select(v => v!.Value).Order()];
        if (values.Length == 0)
        {
            return $"[grey]{Markup.Escape(missing)}[/]";
        }

        double median = values.Length % 2 == 1 ? values[values.Length / 2] : (values[(values.Length / 2) - 1] + values[values.Length / 2]) / 2;
        string fmt = median >= 100 ? "0" : median >= 10 ? "0.0" : "0.00";
        string m = median.ToString(fmt, CultureInfo.InvariantCulture) + unit;
        return values.Length == 1 ? m : $"{m} ({values[0].ToString(fmt, CultureInfo.InvariantCulture)}-{values[^1].ToString(fmt, CultureInfo.InvariantCulture)})";
    }

    private static string Cell(List<BenchRun> runs, Func<BenchRun, long?> metric, string missing)
        => Cell(runs, r => metric(r) is long v ? (double)v : null, missing);

    private static string Cell(List<BenchRun> runs, Func<BenchRun, int?> metric, string missing)
        => Cell(runs, r => metric(r) is int v ? (double)v : null, missing);
}
