using System.CommandLine;
using System.Text.Json;
using Ferry.Host;
using Ferry.Migration;
using Ferry.Migration.Metrics;
using Ferry.Migration.Protocol;
using Ferry.Migration.Strategies;
using Spectre.Console;

namespace Ferry.Cli;

/// <summary>`ferry migrate`: move a running VM between two hosts, with a live progress bar and a summary.</summary>
internal static class MigrateCommand
{
    public static Command Create()
    {
        var name = new Argument<string>("NAME") { Description = "the VM to move" };
        var from = Common.HostOption("--from", "source host API URL");
        var to = new Option<string?>("--to") { Description = "destination host API URL (required unless --resume)" };
        var resume = new Option<bool>("--resume") { Description = "reconnect a migration of NAME that lost its destination after the switchover (the VM is paused at the source), and follow it to its end" };
        var secret = Common.SecretOption();
        Option<StrategyKind> strategy = Common.StrategyOption(MigrationOptions.DefaultStrategy);
        var (settings, parse) = TuningOptions();
        var json = new Option<string?>("--json") { Description = "write the full report (JSON) to this file" };
        var quiet = new Option<bool>("--quiet", "-q") { Description = "no progress bar" };
        var cmd = new Command("migrate", "Live-migrate a VM from one host to another") { name, from, to, resume, secret, strategy, json, quiet };
        foreach (Option o in settings)
        {
            cmd.Options.Add(o);
        }

        cmd.SetAction((ParseResult p, CancellationToken ct) => Cli.GuardAsync(async () =>
        {
            MigrateRequest request = parse(p) with { Strategy = StrategyPolicy.NameOf(p.GetValue(strategy)) };
            ApiCredentials secretValue = Common.Secret(p, secret);
            using var source = new HostClient(p.GetValue(from)!, secretValue);
            MigrationReport report;
            if (p.GetValue(resume))
            {
                report = p.GetValue(quiet)
                    ? await MigrationDriver.ResumeAsync(source, p.GetValue(name)!, null, ct)
                    : await WithProgressAsync(p.GetValue(name)!, (onProgress, c) => MigrationDriver.ResumeAsync(source, p.GetValue(name)!, onProgress, c), ct);
            }
            else
            {
                using var destination = new HostClient(p.GetValue(to) ?? throw new CliException("--to is required (the destination host's API URL)"), secretValue);
                report = p.GetValue(quiet)
                    ? await MigrationDriver.RunAsync(source, destination, p.GetValue(name)!, request, null, ct)
                    : await WithProgressAsync(source, destination, p.GetValue(name)!, request, ct);
            }
            if (p.GetValue(json) is string file)
            {
                await File.WriteAllTextAsync(file, JsonSerializer.Serialize(report, MigrationReport.Json), CancellationToken.None);
            }

            PrintSummary(report);
            return report.Outcome switch { MigrationOutcome.Completed => 0, MigrationOutcome.Cancelled => 2, _ => 1 };
        }));
        return cmd;
    }

    /// <summary>The options every migration entry point (migrate, demo, bench) shares.</summary>
    public static (Option[] Options, Func<ParseResult, MigrateRequest> Parse) TuningOptions()
    {
        var bandwidth = new Option<string>("--bandwidth") { Description = "emulated link rate (1Gbit, 100Mbit, unlimited)", DefaultValueFactory = _ => "unlimited" };
        var downtime = new Option<string>("--downtime-limit")
        {
            Description = "the pause budget of every strategy: pre-copy switches over once the rest fits it at the link's rate; hybrid and auto send only the part of the working set that fits it",
            DefaultValueFactory = _ => "20ms",
        };
        var maxRounds = new Option<int?>("--max-rounds") { Description = "pre-copy: rounds before stop-and-copy (default 30)" };
        var maxLive = new Option<string?>("--max-live-time") { Description = "pre-copy: time before stop-and-copy (default 60s)" };
        var locality = new Option<int?>("--locality") { Description = "hybrid: pages fetched per network fault (default 16), or the most the adaptive window fetches (default 64)" };
        var localityAdaptive = new Option<bool>("--locality-adaptive") { Description = "hybrid: fetch a neighbour of a faulted page (up to --locality) only where its measured hit rate pays for its time on the link against a fault's stall (default; --locality-adaptive false: a fixed window)" };
        var wsWindows = new Option<int?>("--ws-windows") { Description = "hybrid: working set = pages accessed in at least --ws-min-hits of the last N 100 ms windows (default 3)" };
        var wsMinHits = new Option<int?>("--ws-min-hits") { Description = "hybrid: see --ws-windows (default 3)" };
        var wsMax = new Option<string?>("--ws-max") { Description = "hybrid: cap on the working set sent in the pause, most-used pages first (default 64M)" };
        var wsMaxPause = new Option<string?>("--ws-max-pause") { Description = "hybrid: cap the working set at what the link carries in this time (e.g. 20ms), bounding the pause" };
        var wsPresend = new Option<bool>("--ws-presend") { Description = "hybrid: send the working set while the VM still runs too" };
        var livePasses = new Option<int?>("--live-passes") { Description = "post-copy, hybrid: passes over memory while the VM still runs, before the pause (default 0; 1 = one pre-copy pass first, as QEMU)" };
        var pushOrder = new Option<string?>("--push-order") { Description = "linear, fault-near, fault-near-recency (default: linear for post-copy, fault-near-recency for hybrid)" };
        var compress = new Option<bool>("--compress") { Description = "LZ4-compress pages on the wire" };
        var channels = new Option<int?>("--channels") { Description = "connections for the bulk pages, 1..8 (as QEMU's multifd channels; default 1: they share the main connection; faults always have their own)" };
        var autoConverge = new Option<bool>("--auto-converge") { Description = "pre-copy: throttle the guest (20 %, then 10 points more per round, up to 99 %) while rounds do not fit and it dirties at least half of what a round sends" };
        var delta = new Option<bool>("--delta") { Description = "send pages again as only their changed bytes (XBZRLE-like), with a 64 MiB cache of what was sent" };
        var peerTimeout = new Option<string?>("--peer-timeout") { Description = "declare a peer dead after this much silence (heartbeats keep idle connections talking; default: the source host's, 5s)" };
        var reconnectWindow = new Option<string?>("--reconnect-window") { Description = "after a lost link past the switchover, reconnect automatically for this long, then wait for --resume (default: the source host's, 60s)" };
        Option[] all = [bandwidth, downtime, maxRounds, maxLive, locality, localityAdaptive, wsWindows, wsMinHits, wsMax, wsMaxPause, wsPresend, livePasses, pushOrder, compress, channels, autoConverge, delta, peerTimeout, reconnectWindow];
        return (all, p => new MigrateRequest
        {
            Destination = "",
            Token = "",
            Bandwidth = p.GetValue(bandwidth)!,
            DowntimeLimitMs = Common.ParseDuration(p.GetValue(downtime)!).TotalMilliseconds,
            MaxRounds = p.GetValue(maxRounds),
            MaxLiveTimeMs = p.GetValue(maxLive) is string l ? Common.ParseDuration(l).TotalMilliseconds : null,
            LocalityPages = p.GetValue(locality),
            LocalityAdaptive = p.GetResult(localityAdaptive) is { Implicit: false } ? p.GetValue(localityAdaptive) : null,
            WorkingSetWindows = p.GetValue(wsWindows),
            WorkingSetMinHits = p.GetValue(wsMinHits),
            WorkingSetMaxBytes = p.GetValue(wsMax) is string m ? (long)Ferry.Machine.Board.MachineConfig.ParseSize(m) : null,
            WorkingSetMaxPauseMs = p.GetValue(wsMaxPause) is string wp ? Common.ParseDuration(wp).TotalMilliseconds : null,
            WorkingSetPresend = p.GetValue(wsPresend) ? true : null,
            LivePasses = p.GetValue(livePasses),
            PushOrder = p.GetValue(pushOrder),
            Compress = p.GetValue(compress) ? true : null,
            Channels = p.GetValue(channels),
            AutoConverge = p.GetValue(autoConverge) ? true : null,
            DeltaCacheBytes = p.GetValue(delta) ? Ferry.Migration.MigrationOptions.DefaultDeltaCacheBytes : null,
            PeerTimeoutMs = p.GetValue(peerTimeout) is string pt ? Common.ParseDuration(pt).TotalMilliseconds : null,
            ReconnectWindowMs = p.GetValue(reconnectWindow) is string rw ? Common.ParseDuration(rw).TotalMilliseconds : null,
        });
    }

    public static Task<MigrationReport> WithProgressAsync(HostClient source, HostClient destination, string name, MigrateRequest request, CancellationToken ct)
        => WithProgressAsync(name, (onProgress, c) => MigrationDriver.RunAsync(source, destination, name, request, onProgress, c), ct);

    private static async Task<MigrationReport> WithProgressAsync(string name, Func<Action<MigrationStatus>, CancellationToken, Task<MigrationReport>> run, CancellationToken ct)
    {
        MigrationReport? report = null;
        await AnsiConsole.Progress()
            .AutoClear(false)
            .HideCompleted(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
            .StartAsync(async context =>
            {
                ProgressTask task = context.AddTask($"migrating {Markup.Escape(name)}", maxValue: 1);
                report = await run(status =>
                {
                    long total = Math.Max(1, status.PagesTotal);
                    task.MaxValue = total;
                    task.Value = Math.Clamp(total - status.PagesRemaining, 0, total);
                    task.Description = Describe(status);
                    if (status.Done)
                    {
                        task.Value = total;
                        task.StopTask();
                    }
                }, ct);
            });
        return report!;
    }

    public static string Describe(MigrationStatus s)
    {
        string round = s.Phase == "livecopy" && s.Round > 0 ? $" round {s.Round}" : "";
        long remaining = s.Done ? 0 : s.PagesRemaining;
        string stall = s.PeerSilentMs > 0 ? $" [red]stalled: no word from the destination for {s.PeerSilentMs / 1000:0.0} s[/]" : "";
        string detail = s.Detail is string d ? $" [yellow]{Markup.Escape(d)}[/]" : "";
        return $"[bold]{s.Phase}{round}[/] sent {Mib(s.BytesSent)}, remaining {Mib(remaining * 4096)}, "
            + $"{s.RateBitsPerSecond / 1e6:0} Mbit/s, {s.FaultRequests} faults{stall}{detail}";
    }

    public static string Mib(double bytes) => $"{bytes / (1 << 20):0.0} MiB";

    public static void PrintSummary(MigrationReport r)
    {
        var grid = new Grid().AddColumn().AddColumn();
        void Row(string k, string v) => grid.AddRow(new Markup($"[grey]{k}[/]"), new Markup(Markup.Escape(v)));
        Row("outcome", EnumNames.Kebab(r.Outcome) + (r.Error is null ? "" : $": {r.Error}"));
        Row("vm is at", EnumNames.Kebab(r.VmLocation));
        Row("strategy", StrategyPolicy.NameOf(r.Strategy));
        foreach (StrategyDecision d in r.Decisions)
        {
            Row("decided", $"{StrategyPolicy.NameOf(d.Choice)} at {d.AtMs:0} ms: {d.Reason}");
        }

        Row("total time", $"{r.TotalTimeMs:0.0} ms (setup {r.SetupTimeMs:0.0}, live {r.LiveTimeMs:0.0}, post-copy {r.PostCopyTimeMs:0.0})");
        Row("downtime", $"{r.DowntimeMs:0.00} ms (observed at the source: {r.DowntimeObservedMs:0.00} ms)");
        if (r.Switchover is { } sw)
        {
            Row("pause", $"ms: select {sw.SelectMs:0.0}, pages {sw.PausePagesMs:0.0} ({Mib(sw.PausePagesBytes)}), state {sw.StateMs:0.0}, "
                + $"destination {sw.DestinationMs:0.0}, Resumed back at the source {sw.WaitResumedMs:0.0} (handshake round trip {sw.RoundTripMs:0.0})");
        }

        Row("on the wire", $"{Mib(r.BytesOnWire)} (live {Mib(r.Bytes.Live)}, pause {Mib(r.Bytes.Pause)}, push {Mib(r.Bytes.Push)}, faults {Mib(r.Bytes.FaultReplies)})");
        Row("pages", $"{r.Pages.Total:N0} ({r.Pages.Zero:N0} zero, {r.Pages.Resent:N0} resent{(r.Pages.Delta > 0 ? $", {r.Pages.Delta:N0} as deltas" : "")})");
        if (r.PrecopyRounds > 0)
        {
            Row("pre-copy rounds", r.PrecopyRounds.ToString());
        }

        if (StrategyPolicy.For(r.Strategy).HadPostCopyPhase(r))
        {
            Row("network faults", $"{r.NetworkFaults.Count:N0} (stall total {r.NetworkFaults.StallTotalMs:0.0} ms, p50 {r.NetworkFaults.StallP50Ms:0.000} ms, p99 {r.NetworkFaults.StallP99Ms:0.000} ms)");
            if (r.NetworkFaults.Stages is { Total.Count: > 0 } st)
            {
                static string S(StageSummary s) => $"{s.P50Ms * 1000:0}/{s.P99Ms * 1000:0}";
                Row("fault stages", $"µs p50/p99: request {S(st.Request)}{(st.Send is { } send ? $" (its write {S(send)})" : "")}, network {S(st.Network)}, source queue {S(st.SourceQueue)}, "
                    + $"source link {S(st.SourceLink)}, install {S(st.Install)}, resume {S(st.Resume)}; in flight {st.InFlight.Count:N0} ({S(st.InFlight)}); "
                    + $"destination GC {r.NetworkFaults.DestinationGcCollections} ({r.NetworkFaults.DestinationGcPauseMs:0.0} ms)");
                if (st.Slowest is [SlowFault slowest, ..])
                {
                    Row("slowest fault", $"{slowest.TotalMs:0.000} ms, {slowest.AtMs:0} ms after the first; {SlowestStage(slowest)}");
                }
            }

            Row("pages arrived", $"fault {r.PagesArrived.Fault:N0}, prefetch {r.PagesArrived.Prefetch:N0}, push {r.PagesArrived.Push:N0}, pause {r.PagesArrived.Pause:N0}");
            Row("fully resident", $"{r.TimeToFullyResidentMs:0.0} ms after resume");
        }

        if (r.Runtime is { } rt && (rt.SourcePause?.Count > 0 || rt.Destination?.Count > 0))
        {
            static string R(RuntimeSuspensionReport? s) => s is null ? "not measured" : $"{s.Count} ({s.TotalMs:0.0} ms, longest {s.MaxMs:0.0}; GC {s.GcCount}, {s.GcMs:0.0} ms)";
            Row("runtime stops", $"source in the pause {R(rt.SourcePause)}; destination after resume {R(rt.Destination)}");
        }

        if (r.Runtime is { SourceJit: { } sj } rj)
        {
            Row("JIT", $"source during the move {sj.Methods:N0} methods ({sj.Ms:0.0} ms); destination until resident "
                + (rj.DestinationJit is { } dj ? $"{dj.Methods:N0} methods ({dj.Ms:0.0} ms)" : "not measured"));
        }

        if (r.WorkingSet is { } ws)
        {
            Row("working set", $"{ws.Pages:N0} pages ({Mib(ws.Bytes)}){(ws.BudgetPages is long b ? $", at most {b:N0} in the {r.Options.DowntimeLimitMs:0.#} ms budget" : "")}, prefetch hits {r.Prefetch.Hits:N0}, waste {r.Prefetch.Waste:N0}");
        }

        if (r.Liveness is { Interruptions.Count: > 0 } live)
        {
            Row("link lost", string.Join("; ", live.Interruptions.Select(i => $"at {i.AtMs:0} ms ({i.Reason}): "
                + (i.RecoveredAfterMs is double rec ? $"reconnected after {rec:0} ms, {i.PagesResent:N0} pages sent again" : "not recovered"))));
        }

        Row("guest speed", $"before {Mips(r.Guest.IpsBefore)}, during {Mips(r.Guest.IpsDuring)}, after {Mips(r.Guest.IpsAfter)} MIPS");
        AnsiConsole.Write(grid);
    }

    /// <summary>A slow fault's largest stage, named.</summary>
    private static string SlowestStage(SlowFault f)
    {
        (string Name, double? Ms)[] stages =
        [
            ("request", f.RequestMs), ("its write", f.SendMs), ("network", f.NetworkMs), ("source queue", f.SourceQueueMs),
            ("source link", f.SourceLinkMs), ("install", f.InstallMs), ("resume", f.ResumeMs), ("in flight", f.InFlightMs),
        ];
        (string name, double? ms) = stages.MaxBy(s => s.Ms ?? -1);
        return ms is double m ? $"mostly {name} ({m:0.000} ms)" : "no stage measured";
    }

    private static string Mips(double? ips) => ips is double v ? $"{v / 1e6:0.0}" : "n/a";
}
