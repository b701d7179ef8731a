using System.Collections.Concurrent;
using Ferry.Migration;
using Ferry.Migration.Metrics;
using Ferry.Migration.Protocol;
using Ferry.Migration.Transport;
using Microsoft.Extensions.Logging;

namespace Ferry.Host;

/// <summary>The source role of a host: the migrations it runs, their progress and reports.</summary>
public sealed class OutgoingMigrations
{
    private readonly ConcurrentDictionary<string, Entry> _migrations = new();
    private readonly ILogger _log;
    private readonly CancellationToken _stopping;
    private int _next;

    private readonly MigrationTransport _transport;

    public OutgoingMigrations(ILogger log, MigrationTransport transport, CancellationToken stopping)
    {
        _transport = transport;
        _log = log;
        _stopping = stopping;
    }

    public string Start(VmInstance vm, MigrateRequest request)
    {
        MigrationOptions options = ToOptions(request);
        byte[] token;
        try
        {
            token = Convert.FromHexString(request.Token ?? "");
        }
        catch (FormatException)
        {
            throw new ApiException(400, "the migration token is not hex");
        }

        if (token.Length != Hello.TokenLength)
        {
            throw new ApiException(400, "the migration token has the wrong length");
        }

        string destination = ParseEndpoint(request.Destination);
        string id = $"m{Interlocked.Increment(ref _next)}-{vm.Name}";

        // The migration holds the VM (Departing: stop, resume and remove are refused) and a lease
        // on its memory until it has ended, whatever the operator does meanwhile.
        MachineLease lease = vm.TryLease() ?? throw new ApiException(409, $"VM '{vm.Name}' has been removed");
        try
        {
            vm.BeginMigration(id);
        }
        catch
        {
            lease.Dispose();
            throw;
        }

        string label = request.DestinationLabel ?? request.Destination;
        var migration = new SourceMigration(vm, options, token, (role, ct) => _transport.ConnectAsync(destination, ct), id, label);
        var entry = new Entry(vm.Name, migration, SourceMigration.StrategyName(options.Strategy));
        _migrations[id] = entry;
        entry.Task = Task.Run(async () =>
        {
            MigrationReport? report = null;
            try
            {
                report = await migration.RunAsync(_stopping).ConfigureAwait(false);
                entry.Report = report;
                _log.LogInformation("migration {Id} of {Vm}: {Outcome} in {Ms:0} ms, downtime {Down:0.0} ms{Error}",
                    id, vm.Name, report.Outcome, report.TotalTimeMs, report.DowntimeMs, report.Error is null ? "" : ": " + report.Error);
            }
            finally
            {
                switch (report?.VmLocation)
                {
                    case "destination":
                        await vm.DepartedAsync(label, request.DestinationApi).ConfigureAwait(false);
                        break;
                    case "source-paused":
                        vm.LeftPaused(report.Error ?? "migration failed");
                        break;
                    default:
                        vm.Returned(report?.Error ?? "the outgoing migration ended without a report; the VM stays here");
                        break;
                }

                lease.Dispose();
            }
        });
        return id;
    }

    /// <summary>Cancels a migration that has not reached its switchover and waits until the VM is back (409 if it is past it).</summary>
    public async Task CancelAndWaitAsync(string id, string what)
    {
        if (!_migrations.TryGetValue(id, out Entry? e))
        {
            return;
        }

        if (!e.Task.IsCompleted && !e.Migration.Cancel())
        {
            throw new ApiException(409, $"{what} is past the switchover of migration {id}; it can no longer be changed here");
        }

        await e.Task.WaitAsync(TimeSpan.FromSeconds(30)).ConfigureAwait(false);
    }

    public MigrationStatus Status(string id)
    {
        if (!_migrations.TryGetValue(id, out Entry? e))
        {
            throw new ApiException(404, $"no migration '{id}' on this host");
        }

        MigrationProgress p = e.Migration.Progress;
        MigrationReport? report = e.Report;
        return new MigrationStatus
        {
            Id = id,
            Vm = e.Vm,
            Strategy = e.Strategy,
            Phase = report?.Outcome ?? p.Phase.ToString().ToLowerInvariant(),
            Done = report is not null,
            Round = p.Round,
            BytesSent = Interlocked.Read(ref p.BytesSent),
            PagesRemaining = Interlocked.Read(ref p.PagesRemaining),
            PagesTotal = Interlocked.Read(ref p.PagesTotal),
            FaultRequests = Interlocked.Read(ref p.FaultRequests),
            ElapsedMs = p.ElapsedMs,
            RateBitsPerSecond = p.RateBitsPerSecond,
            Report = report,
        };
    }

    public bool Cancel(string id)
    {
        if (!_migrations.TryGetValue(id, out Entry? e))
        {
            throw new ApiException(404, $"no migration '{id}' on this host");
        }

        return e.Migration.Cancel();
    }

    /// <summary>The request's options, validated (400 with the reason); the CLI checks them with this before anything is reserved.</summary>
    public static MigrationOptions ToOptions(MigrateRequest r)
    {
        try
        {
            var defaults = new MigrationOptions();
            var options = new MigrationOptions
            {
                Strategy = SourceMigration.ParseStrategy(r.Strategy ?? "hybrid"),
                BandwidthBitsPerSecond = LinkShaper.ParseRate(r.Bandwidth ?? "unlimited"),
                DowntimeLimit = Milliseconds(r.DowntimeLimitMs, "downtimeLimitMs"),
                MaxRounds = r.MaxRounds ?? defaults.MaxRounds,
                MaxLiveTime = r.MaxLiveTimeMs is double t ? Milliseconds(t, "maxLiveTimeMs") : defaults.MaxLiveTime,
                LocalityPages = r.LocalityPages ?? defaults.LocalityPages,
                LocalityAdaptive = r.LocalityAdaptive ?? defaults.LocalityAdaptive,
                WorkingSetWindows = r.WorkingSetWindows ?? defaults.WorkingSetWindows,
                WorkingSetMinHits = r.WorkingSetMinHits ?? Math.Min(defaults.WorkingSetMinHits, r.WorkingSetWindows ?? defaults.WorkingSetWindows),
                WorkingSetMaxBytes = r.WorkingSetMaxBytes ?? defaults.WorkingSetMaxBytes,
                WorkingSetMaxPause = r.WorkingSetMaxPauseMs is double wp ? Milliseconds(wp, "workingSetMaxPauseMs") : defaults.WorkingSetMaxPause,
                WorkingSetPresend = r.WorkingSetPresend ?? defaults.WorkingSetPresend,
                LivePasses = r.LivePasses ?? defaults.LivePasses,
                PushOrder = r.PushOrder is null ? defaults.PushOrder : ParsePushOrder(r.PushOrder),
                Compress = r.Compress ?? defaults.Compress,
                AutoConverge = r.AutoConverge ?? defaults.AutoConverge,
                DeltaCacheBytes = r.DeltaCacheBytes is long d ? (d is >= 0 and <= 16L << 30 ? d : throw new ApiException(400, "deltaCacheBytes must be 0 to 16 GiB")) : defaults.DeltaCacheBytes,
            };
            options.Validate();
            return options;
        }
        catch (Exception e) when (e is ArgumentException or FormatException or OverflowException)
        {
            throw new ApiException(400, e.Message);
        }
    }

    /// <summary>A duration field: finite, not negative, at most a day ("Infinity" and NaN are refused, not overflowed).</summary>
    private static TimeSpan Milliseconds(double ms, string field)
        => double.IsFinite(ms) && ms >= 0 && ms <= TimeSpan.FromDays(1).TotalMilliseconds
            ? TimeSpan.FromMilliseconds(ms)
            : throw new ArgumentException($"{field} must be a number of milliseconds from 0 to 86400000, not {ms}");

    public static PushOrder ParsePushOrder(string text) => text.Trim().ToLowerInvariant() switch
    {
        "default" => PushOrder.Default,
        "linear" => PushOrder.Linear,
        "fault-near" or "faultneighbourhood" => PushOrder.FaultNeighbourhood,
        "fault-near-recency" or "faultneighbourhoodthenrecency" => PushOrder.FaultNeighbourhoodThenRecency,
        _ => throw new ArgumentException($"unknown push order '{text}' (linear, fault-near, fault-near-recency)"),
    };

    private static string ParseEndpoint(string? text)
    {
        if (text is null)
        {
            throw new ApiException(400, "the destination is missing (host:port)");
        }

        try
        {
            TcpTransport.ParseEndpoint(text);
            return text;
        }
        catch (ArgumentException e)
        {
            throw new ApiException(400, e.Message);
        }
    }

    private sealed class Entry(string vm, SourceMigration migration, string strategy)
    {
        public string Vm { get; } = vm;

        public SourceMigration Migration { get; } = migration;

        public string Strategy { get; } = strategy;

        public Task Task { get; set; } = Task.CompletedTask;

        public volatile MigrationReport? Report;
    }
}
