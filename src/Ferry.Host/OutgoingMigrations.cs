using System.Collections.Concurrent;
using System.Net.Sockets;
using Ferry.Machine.Board;
using Ferry.Migration;
using Ferry.Migration.Mechanisms;
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

    private readonly int _faultSocketPriority;
    private readonly TimeSpan _peerTimeout;
    private readonly TimeSpan _reconnectWindow;

    private readonly string? _pageFiles;
    private readonly ulong _maxMemory;

    public OutgoingMigrations(ILogger log, CancellationToken stopping, int faultSocketPriority = 6, TimeSpan? peerTimeout = null, TimeSpan? reconnectWindow = null,
        string? pageFiles = null, ulong maxMemory = 16UL << 30)
    {
        _pageFiles = pageFiles;
        _maxMemory = maxMemory;
        _faultSocketPriority = faultSocketPriority;
        _peerTimeout = peerTimeout ?? TimeSpan.FromSeconds(5);
        _reconnectWindow = reconnectWindow ?? TimeSpan.FromSeconds(60);
        _log = log;
        _stopping = stopping;
    }

    public string Start(VmInstance vm, MigrateRequest request)
    {
        if (vm.State is not (VmState.Running or VmState.Paused))
        {
            throw new ApiException(409, $"VM '{vm.Name}' is {vm.State.ToString().ToLowerInvariant()}; only a running or paused VM can migrate");
        }

        if (vm.MigrationId is not null && _migrations.TryGetValue(vm.MigrationId, out Entry? running) && !running.Task.IsCompleted)
        {
            throw new ApiException(409, $"VM '{vm.Name}' is already migrating ({vm.MigrationId})");
        }

        MigrationOptions options = ToOptions(request, _peerTimeout, _reconnectWindow) with { PageFileDirectory = _pageFiles };
        byte[] token;
        try
        {
            token = Convert.FromHexString(request.Token);
        }
        catch (FormatException)
        {
            throw new ApiException(400, "the migration token is not hex");
        }

        if (token.Length != Hello.TokenLength)
        {
            throw new ApiException(400, "the migration token has the wrong length");
        }

        (string host, int port) = ParseEndpoint(request.Destination);
        string id = $"m{Interlocked.Increment(ref _next)}-{vm.Name}";
        string label = request.DestinationLabel ?? request.Destination;
        var migration = new SourceMigration(vm, options, token, (role, ct) => ConnectAsync(host, port, _faultSocketPriority, ct), id, label)
        {
            DataEndpoint = request.Destination,
        };
        vm.MigrationId = id;
        var entry = new Entry(vm.Name, migration, SourceMigration.StrategyName(options.Strategy));
        _migrations[id] = entry;
        entry.Task = Task.Run(async () =>
        {
            MigrationReport report = await migration.RunAsync(_stopping).ConfigureAwait(false);
            entry.Report = report;
            _log.LogInformation("migration {Id} of {Vm}: {Outcome} in {Ms:0} ms, downtime {Down:0.0} ms{Error}",
                id, vm.Name, report.Outcome, report.TotalTimeMs, report.DowntimeMs, report.Error is null ? "" : ": " + report.Error);
            if (report.VmLocation == "destination")
            {
                await vm.DepartedAsync(label).ConfigureAwait(false);
            }
            else if (report.VmLocation == "source-paused")
            {
                vm.LeftPaused(report.Error ?? "migration failed");
            }
        });
        return id;
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
            PeerSilentMs = report is null ? p.PeerSilentMs : 0,
            Detail = report is null ? p.Detail : null,
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
            (string host, int port) = ParseEndpoint(file.Destination);
            string id = "r" + file.MigrationId;
            var migration = new SourceMigration(source, options, file.Token, (role, ct) => ConnectAsync(host, port, _faultSocketPriority, ct), id, file.Destination);
            var entry = new Entry(file.VmName, migration, SourceMigration.StrategyName(file.Strategy));
            _migrations[id] = entry;
            _log.LogWarning("serving {Pages} pages of {Vm} still owed to {Destination} from {Path} (migration {Id})", file.Pages!.PopCount(), file.VmName, file.Destination, path, id);
            entry.Task = Task.Run(async () =>
            {
                using (source)
                {
                    MigrationReport report = await migration.ResumeFromPageFileAsync(file, _stopping).ConfigureAwait(false);
                    entry.Report = report;
                    _log.LogInformation("migration {Id} of {Vm} from its page file: {Outcome}{Error}", id, file.VmName, report.Outcome, report.Error is null ? "" : ": " + report.Error);
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

    private static MigrationOptions ToOptions(MigrateRequest r, TimeSpan peerTimeout, TimeSpan reconnectWindow)
    {
        try
        {
            var defaults = new MigrationOptions();
            var options = new MigrationOptions
            {
                Strategy = SourceMigration.ParseStrategy(r.Strategy),
                BandwidthBitsPerSecond = LinkShaper.ParseRate(r.Bandwidth),
                DowntimeLimit = TimeSpan.FromMilliseconds(r.DowntimeLimitMs),
                MaxRounds = r.MaxRounds ?? defaults.MaxRounds,
                MaxLiveTime = r.MaxLiveTimeMs is double t ? TimeSpan.FromMilliseconds(t) : defaults.MaxLiveTime,
                LocalityPages = r.LocalityPages ?? defaults.LocalityPages,
                LocalityAdaptive = r.LocalityAdaptive ?? defaults.LocalityAdaptive,
                WorkingSetWindows = r.WorkingSetWindows ?? defaults.WorkingSetWindows,
                WorkingSetMinHits = r.WorkingSetMinHits ?? Math.Min(defaults.WorkingSetMinHits, r.WorkingSetWindows ?? defaults.WorkingSetWindows),
                WorkingSetMaxBytes = r.WorkingSetMaxBytes ?? defaults.WorkingSetMaxBytes,
                WorkingSetMaxPause = r.WorkingSetMaxPauseMs is double wp ? TimeSpan.FromMilliseconds(wp) : defaults.WorkingSetMaxPause,
                WorkingSetPresend = r.WorkingSetPresend ?? defaults.WorkingSetPresend,
                LivePasses = r.LivePasses ?? defaults.LivePasses,
                PushOrder = r.PushOrder is null ? defaults.PushOrder : ParsePushOrder(r.PushOrder),
                Compress = r.Compress ?? defaults.Compress,
                PeerTimeout = r.PeerTimeoutMs is double pt ? TimeSpan.FromMilliseconds(pt) : peerTimeout,
                ReconnectWindow = r.ReconnectWindowMs is double rw ? TimeSpan.FromMilliseconds(rw) : reconnectWindow,
            };
            options.Validate();
            return options;
        }
        catch (Exception e) when (e is ArgumentException or FormatException or OverflowException)
        {
            throw new ApiException(400, e.Message);
        }
    }

    public static PushOrder ParsePushOrder(string text) => text.Trim().ToLowerInvariant() switch
    {
        "default" => PushOrder.Default,
        "linear" => PushOrder.Linear,
        "fault-near" or "faultneighbourhood" => PushOrder.FaultNeighbourhood,
        "fault-near-recency" or "faultneighbourhoodthenrecency" => PushOrder.FaultNeighbourhoodThenRecency,
        _ => throw new ArgumentException($"unknown push order '{text}' (linear, fault-near, fault-near-recency)"),
    };

    private static (string Host, int Port) ParseEndpoint(string text)
    {
        int colon = text.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(text.AsSpan(colon + 1), out int port) || port is <= 0 or > 65535)
        {
            throw new ApiException(400, $"'{text}' is not host:port");
        }

        return (text[..colon].Trim('[', ']'), port);
    }

    private static async Task<Stream> ConnectAsync(string host, int port, int faultSocketPriority, CancellationToken ct)
    {
        var client = new TcpClient { NoDelay = true };
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(10));
        try
        {
            await client.ConnectAsync(host, port, timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            client.Dispose();
            throw new SocketException((int)SocketError.TimedOut);
        }
        catch
        {
            client.Dispose();
            throw;
        }

        return new SocketConnectionStream(client.Client, faultSocketPriority);
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
