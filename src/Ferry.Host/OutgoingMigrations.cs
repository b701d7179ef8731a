using System.Collections.Concurrent;
using Ferry.Machine.Board;
using Ferry.Migration;
using Ferry.Migration.Mechanisms;
using Ferry.Migration.Metrics;
using Ferry.Migration.Protocol;
using Ferry.Migration.Strategies;
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
    private readonly TimeSpan _peerTimeout;
    private readonly TimeSpan _reconnectWindow;
    private readonly string? _pageFiles;
    private readonly ulong _maxMemory;

    public OutgoingMigrations(ILogger log, MigrationTransport transport, CancellationToken stopping, TimeSpan? peerTimeout = null, TimeSpan? reconnectWindow = null,
        string? pageFiles = null, ulong maxMemory = 16UL << 30)
    {
        _transport = transport;
        _pageFiles = pageFiles;
        _maxMemory = maxMemory;
        _peerTimeout = peerTimeout ?? TimeSpan.FromSeconds(5);
        _reconnectWindow = reconnectWindow ?? TimeSpan.FromSeconds(60);
        _log = log;
        _stopping = stopping;
    }

    public string Start(VmInstance vm, MigrateRequest request)
    {
        MigrationOptions options = ToOptions(request, _peerTimeout, _reconnectWindow) with { PageFileDirectory = _pageFiles };
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
        var migration = new SourceMigration(vm, options, token, (role, ct) => _transport.ConnectAsync(destination, ct), id, label)
        {
            DataEndpoint = request.Destination,
        };
        var entry = new Entry(vm.Name, migration, StrategyPolicy.NameOf(options.Strategy));
        _migrations[id] = entry;
        entry.Task = Task.Run(async () =>
        {
            MigrationReport? report = null;
            string? crash = null;
            try
            {
                report = await migration.RunAsync(_stopping).ConfigureAwait(false);
                _log.LogInformation("migration {Id} of {Vm}: {Outcome} in {Ms:0} ms, downtime {Down:0.0} ms{Error}",
                    id, vm.Name, EnumNames.Kebab(report.Outcome), report.TotalTimeMs, report.DowntimeMs, report.Error is null ? "" : ": " + report.Error);
            }
            catch (Exception e)
            {
                // A defect, not a peer's doing: say so, and keep the VM where it may safely be.
                crash = $"the outgoing migration ended without a report ({e.GetType().Name}: {e.Message})";
                _log.LogError(e, "migration {Id} of {Vm}: {Crash}", id, vm.Name, crash);
            }
            finally
            {
                try
                {
                    switch (report?.VmLocation)
                    {
                        case VmLocation.Destination:
                            await vm.DepartedAsync(label, request.DestinationApi).ConfigureAwait(false);
                            break;
                        case VmLocation.SourcePaused:
                            vm.LeftPaused(report.Error ?? "migration failed");
                            break;
                        case null when migration.PastPointOfNoReturn:
                            // The state may have reached the destination and run there: never resume it here.
                            vm.LeftPaused((crash ?? "the outgoing migration ended without a report") + "; the VM stays paused here (resume it only if it does not run at the destination)");
                            break;
                        default:
                            vm.Returned(report?.Error ?? (crash ?? "the outgoing migration ended without a report") + "; the VM stays here");
                            break;
                    }
                }
                finally
                {
                    // Published only once the VM is where the report says: a client that sees the
                    // migration done must find the VM in its final state (it saw 'departing').
                    entry.Crash = crash;
                    entry.Report = report;
                    lease.Dispose();
                }
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
            Phase = report is not null ? EnumNames.Kebab(report.Outcome) : (e.Crash is not null ? "failed" : p.Phase.ToString().ToLowerInvariant()),
            Done = report is not null || e.Crash is not null,
            Round = p.Round,
            BytesSent = Interlocked.Read(ref p.BytesSent),
            PagesRemaining = Interlocked.Read(ref p.PagesRemaining),
            PagesTotal = Interlocked.Read(ref p.PagesTotal),
            FaultRequests = Interlocked.Read(ref p.FaultRequests),
            ElapsedMs = p.ElapsedMs,
            RateBitsPerSecond = p.RateBitsPerSecond,
            PeerSilentMs = report is null ? p.PeerSilentMs : 0,
            Detail = report is null ? e.Crash ?? p.Detail : null,
            Recoveries = p.Recoveries,
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

    /// <summary>
    /// At start-up: the page files a previous run of this host left (it died after a switchover,
    /// with pages still owed): each is served to its destination by a migration of its own.
    /// </summary>
    public void ResumeFromPageFiles()
    {
        if (_pageFiles is null)
        {
            return;
        }

        foreach (string path in PageFile.Find(_pageFiles))
        {
            PageFile file;
            VirtMachine machine;
            try
            {
                (file, machine) = PageFile.Read(path, _maxMemory);
            }
            catch (Exception e) when (e is InvalidDataException or IOException or UnauthorizedAccessException)
            {
                _log.LogError("page file {Path} cannot be served: {Reason}", path, e.Message);
                continue;
            }

            var source = new PageFileSource(file, machine);
            var options = new MigrationOptions
            {
                Strategy = file.Strategy,
                PeerTimeout = TimeSpan.FromMilliseconds(file.PeerTimeoutMs),
                ReconnectWindow = _reconnectWindow,
                PushOrder = PushOrder.Linear,
            };
            string endpoint = ParseEndpoint(file.Destination);
            string id = "r" + file.MigrationId;
            var migration = new SourceMigration(source, options, file.Token, (role, ct) => _transport.ConnectAsync(endpoint, ct), id, file.Destination);
            var entry = new Entry(file.VmName, migration, StrategyPolicy.NameOf(file.Strategy));
            _migrations[id] = entry;
            _log.LogWarning("serving {Pages} pages of {Vm} still owed to {Destination} from {Path} (migration {Id})", file.Pages!.PopCount(), file.VmName, file.Destination, path, id);
            entry.Task = Task.Run(async () =>
            {
                using (source)
                {
                    MigrationReport report = await migration.ResumeFromPageFileAsync(file, _stopping).ConfigureAwait(false);
                    entry.Report = report;
                    _log.LogInformation("migration {Id} of {Vm} from its page file: {Outcome}{Error}", id, file.VmName, EnumNames.Kebab(report.Outcome), report.Error is null ? "" : ": " + report.Error);
                }
            });
        }
    }

    /// <summary>Asks a migration that lost its destination after the switchover to reconnect now; false unless it is recovering.</summary>
    public bool Resume(string id)
    {
        if (!_migrations.TryGetValue(id, out Entry? e))
        {
            throw new ApiException(404, $"no migration '{id}' on this host");
        }

        return e.Migration.Resume();
    }

    /// <summary>The request's options, validated (400 with the reason); the CLI checks them with this before anything is reserved.</summary>
    public static MigrationOptions ToOptions(MigrateRequest r, TimeSpan? peerTimeout = null, TimeSpan? reconnectWindow = null)
    {
        try
        {
            var defaults = new MigrationOptions();
            var options = new MigrationOptions
            {
                Strategy = r.Strategy is null ? StrategyKind.Hybrid : StrategyPolicy.Parse(r.Strategy),
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
                Channels = r.Channels ?? defaults.Channels,
                AutoConverge = r.AutoConverge ?? defaults.AutoConverge,
                DeltaCacheBytes = r.DeltaCacheBytes is long d ? (d is >= 0 and <= 16L << 30 ? d : throw new ApiException(400, "deltaCacheBytes must be 0 to 16 GiB")) : defaults.DeltaCacheBytes,
                PeerTimeout = r.PeerTimeoutMs is double pt ? Milliseconds(pt, "peerTimeoutMs") : peerTimeout ?? defaults.PeerTimeout,
                ReconnectWindow = r.ReconnectWindowMs is double rw ? Milliseconds(rw, "reconnectWindowMs") : reconnectWindow ?? defaults.ReconnectWindow,
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

        /// <summary>Why the migration ended without a report (a defect), or null.</summary>
        public volatile string? Crash;
    }
}
