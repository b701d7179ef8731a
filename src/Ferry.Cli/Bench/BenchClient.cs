using Ferry.Cli.Client;

namespace Ferry.Cli.Bench;

/// <summary>
/// The kvserver's client through one bench migration: started once the guest's service is up,
/// running through the warm-up, the move and a while after, then stopped; its requests are
/// split by the migration's instants into before, during and after.
/// </summary>
internal sealed class BenchClient : IDisposable
{
    /// <summary>The bench's load: 1,000 requests/s over 4 connections.</summary>
    public const double Rate = 1000;
    public const int Connections = 4;

    /// <summary>How long the guest keeps serving after the migration completed (the "after" requests).</summary>
    public static readonly TimeSpan After = TimeSpan.FromSeconds(3);

    /// <summary>The line the kvserver workload prints once it listens.</summary>
    public static readonly string ListeningLine = $"kvserver: listening on port {HostBridge.ServicePort}";

    private readonly CancellationTokenSource _stop = new();
    private Task<KvClientResult>? _run;
    private Task<KvClientResult?>? _stopped;

    private readonly NetworkGuest _guest;

    public BenchClient(NetworkGuest guest) => _guest = guest;

    /// <summary>Starts sending (returns at once); a connection failure shows in <see cref="StopAsync"/>.</summary>
    public Task StartAsync(CancellationToken ct)
    {
        var options = new KvClientOptions(new System.Net.IPEndPoint(System.Net.IPAddress.Parse(_guest.Address), HostBridge.ServicePort),
            Rate, Connections, TimeSpan.FromMinutes(5));
        _run = KvClient.RunAsync(options, _stop.Token, ct);
        return Task.CompletedTask;
    }

    /// <summary>Stops sending, waits for the last replies, returns every request (null if it was never started); a second call returns the same.</summary>
    public Task<KvClientResult?> StopAsync() => _stopped ??= StopOnceAsync();

    private async Task<KvClientResult?> StopOnceAsync()
    {
        if (_run is null)
        {
            return null;
        }

        await _stop.CancelAsync();
        return await _run;
    }

    /// <summary>
    /// The run's client figures: the outage (the longest gap without a reply that overlaps the
    /// migration, from <paramref name="started"/> to <paramref name="ended"/>; the whole run's
    /// longest too, to show the host's own hiccups), latency before the migration, during it and
    /// after it, the failed requests, and the trace for the plot.
    /// </summary>
    public static BenchRun WithClient(BenchRun run, KvClientResult client, DateTimeOffset started, DateTimeOffset? paused, DateTimeOffset? resumed, DateTimeOffset ended)
    {
        double from = client.MsSinceStart(started), to = client.MsSinceStart(ended);
        PhaseLatencies phases = client.Phases(from, to);
        return run with
        {
            ClientRequests = client.Samples.Count,
            ClientOutageMs = client.LongestGapWithin(from, to).Ms,
            ClientOutageAtMs = client.LongestGapWithin(from, to).FromMs - from,
            ClientLongestGapMs = client.LongestGap.Ms,
            ClientLatencyMs = phases,
            ClientFailedRequests = client.Failed,
            ClientBrokenConnections = client.BrokenConnections,
            ClientFirstError = client.FirstError,
            ClientTrace = new ClientTrace(client, from, paused is { } p ? client.MsSinceStart(p) : null, resumed is { } r ? client.MsSinceStart(r) : null, to),
        };
    }

    public void Dispose() => _stop.Dispose();

    private static int _qemuRuns;

    /// <summary>
    /// A QEMU migration of a networked guest (the kvserver workload) with its client: the same
    /// devices on both sides (a raw disk both open, a network card with the same MAC), each QEMU
    /// on its own TAP on the bridge; the client runs from the service's start (the warm-up is
    /// "before") through the move to <see cref="After"/> past its completion, and stops before
    /// the QEMUs do. The bridge must exist (<see cref="HostBridge.EnsureAsync"/>), and the
    /// spec's kernel command line must give the guest <paramref name="guest"/>'s address.
    /// </summary>
    public static async Task<(QemuRunResult Qemu, KvClientResult? Client)> RunQemuAsync(QemuMigrationSpec spec, NetworkGuest guest, CancellationToken ct)
    {
        DirectoryInfo dir = Directory.CreateTempSubdirectory("ferry-net-");
        using var client = new BenchClient(guest);
        try
        {
            string ifup = HostBridge.WriteQemuIfup(dir.FullName);
            string disk = Path.Combine(dir.FullName, "disk.img");
            await using (FileStream f = File.Create(disk))
            {
                f.SetLength(16 << 20);
            }

            int n = Interlocked.Increment(ref _qemuRuns);
            QemuRunResult q = await QemuMigration.RunAsync(spec with
            {
                SourceArgs = HostBridge.QemuDevices(guest, HostBridge.TapName("fqs", n), ifup, disk),
                DestinationArgs = HostBridge.QemuDevices(guest, HostBridge.TapName("fqd", n), ifup, disk),
                ServiceReadyLine = ListeningLine,
                OnGuestReady = client.StartAsync,
                RunAfter = After,
                BeforeShutdown = client.StopAsync,
            }, ct);
            return (q, await client.StopAsync());
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }
}

/// <summary>A run's client requests and the migration's instants on the client's clock (ms from its start), for the latency plot.</summary>
public sealed record ClientTrace(KvClientResult Client, double MigrationStartMs, double? PauseMs, double? ResumeMs, double MigrationEndMs);
