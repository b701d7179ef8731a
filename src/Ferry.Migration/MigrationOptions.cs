using Ferry.Migration.Mechanisms;
using Ferry.Migration.Protocol;

namespace Ferry.Migration;

/// <summary>
/// Everything a migration can be told, with the defaults Ferry uses. The paper leaves the
/// working-set window, its cap, the locality window and the push order open: they are here,
/// explicit, and their defaults are measured in docs/results.md.
/// </summary>
public sealed record MigrationOptions
{
    public StrategyKind Strategy { get; init; } = DefaultStrategy;

    /// <summary>The strategy when none is named (the CLI's and the host API's default too).</summary>
    public const StrategyKind DefaultStrategy = StrategyKind.Auto;

    /// <summary>Emulated link rate in bits per second (token bucket on the sender); 0 = unlimited.</summary>
    public long BandwidthBitsPerSecond { get; init; }

    /// <summary>
    /// The pause budget of every strategy: pre-copy switches over once the remaining dirty pages
    /// fit it at the link rate; hybrid (and auto once it goes hybrid) sends in the pause only the
    /// part of the working set that fits it; post-copy's pause is CPU and devices only.
    /// </summary>
    public TimeSpan DowntimeLimit { get; init; } = DefaultDowntimeLimit;

    public static readonly TimeSpan DefaultDowntimeLimit = TimeSpan.FromMilliseconds(20);

    /// <summary>Pre-copy gives up iterating after this many rounds and stops-and-copies.</summary>
    public int MaxRounds { get; init; } = 30;

    /// <summary>Pre-copy gives up iterating after this long live and stops-and-copies.</summary>
    public TimeSpan MaxLiveTime { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// Hybrid: pages fetched per network fault (the faulted page and its neighbours), or with
    /// <see cref="LocalityAdaptive"/> the most it may fetch; null: <see cref="DefaultLocalityPages"/>
    /// or <see cref="DefaultAdaptiveLocalityPages"/>.
    /// </summary>
    public int? LocalityPages { get; init; }

    /// <summary>The fixed window's default size.</summary>
    public const int DefaultLocalityPages = 16;

    /// <summary>The adaptive window's default bound: it is only as wide as its measured hit rate pays for.</summary>
    public const int DefaultAdaptiveLocalityPages = 64;

    /// <summary>
    /// Hybrid: adapt the window per fault to its measured prefetch hit rate at each distance from
    /// the fault, against a fault's measured stall and a page's time on the link
    /// (<see cref="Mechanisms.PrepageWindow"/>). On by default.
    /// </summary>
    public bool LocalityAdaptive { get; init; } = true;

    /// <summary>Hybrid: a page is in the working set if accessed in at least <see cref="WorkingSetMinHits"/> of the last <see cref="WorkingSetWindows"/> windows.</summary>
    public int WorkingSetWindows { get; init; } = 3;

    public int WorkingSetMinHits { get; init; } = 3;

    /// <summary>Hybrid: cap on the working set sent in the pause (the most-used pages first). Default 64 MiB.</summary>
    public long WorkingSetMaxBytes { get; init; } = DefaultWorkingSetMaxBytes;

    public const long DefaultWorkingSetMaxBytes = 64L << 20;

    /// <summary>
    /// Hybrid: the pause the working set may cost, if not the downtime limit: no more than the
    /// link carries in this time (see <see cref="Strategies.StrategyPolicy.PauseBudget"/>).
    /// </summary>
    public TimeSpan? WorkingSetMaxPause { get; init; }

    /// <summary>Hybrid: also send the working set while the VM still runs, so the pause resends only its dirty part.</summary>
    public bool WorkingSetPresend { get; init; }

    /// <summary>
    /// Post-copy and hybrid: passes over memory while the VM still runs, before the pause
    /// (0 = none, as the paper; 1 = one pre-copy pass first, as QEMU's post-copy does).
    /// Fewer pages are absent when the VM resumes, at the cost of resending what it dirtied.
    /// </summary>
    public int LivePasses { get; init; }

    /// <summary>Order of the background push after the VM resumes at the destination.</summary>
    public PushOrder PushOrder { get; init; } = PushOrder.Default;

    /// <summary>Pages pushed around each recent fault before the push resumes its order (hybrid).</summary>
    public int FaultNeighbourhoodPages { get; init; } = 64;

    /// <summary>
    /// Pre-copy (and auto while it runs pre-copy): auto-converge, as QEMU's. While a round
    /// does not fit the downtime limit and the guest dirtied at least half of what the round
    /// sent, the guest is throttled (the VM thread sleeps that share of its time): 20 %, then 10
    /// points more per such round, up to 99 %. Lifted at the pause, or when the migration ends.
    /// </summary>
    public bool AutoConverge { get; init; }

    /// <summary>
    /// Pages sent again while the VM runs at the source (pre-copy rounds, live passes, the pause)
    /// go as only their changed bytes when the content last sent is in a cache of this size
    /// (as QEMU's XBZRLE; 0 = off). <see cref="DefaultDeltaCacheBytes"/> with <c>--delta</c>.
    /// </summary>
    public long DeltaCacheBytes { get; init; }

    public const long DefaultDeltaCacheBytes = 64L << 20;

    /// <summary>LZ4-compress non-zero pages on the wire.</summary>
    public bool Compress { get; init; }

    /// <summary>
    /// Liveness: either end declares the other dead after this much silence (each sends a
    /// heartbeat on a connection idle for a fifth of it). Also bounds every handshake step.
    /// </summary>
    public TimeSpan PeerTimeout { get; init; } = TimeSpan.FromMilliseconds(Hello.DefaultPeerTimeoutMs);

    /// <summary>
    /// After the destination is lost past the switchover, reconnection is tried automatically
    /// for this long; after that the migration waits (VM paused here) for an explicit resume.
    /// </summary>
    public TimeSpan ReconnectWindow { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// Post-copy and hybrid: write the pages still owed at the switchover to a page file in this
    /// directory (fsync'd before the switchover state is sent), so that a source agent restarted
    /// after a crash can serve them (<see cref="PageFile"/>). Null: none (the VM's pages live
    /// only in this process until they have crossed).
    /// </summary>
    public string? PageFileDirectory { get; init; }

    /// <summary>
    /// Connections for the bulk pages (live rounds and passes, pause pages, the push), as QEMU's
    /// multifd channels: 1 (the default) sends them on the main connection; N in 2..8 opens N
    /// bulk connections, each with its own sender thread, and stripes the pages over them. Fault
    /// replies keep their own connection either way.
    /// </summary>
    public int Channels { get; init; } = 1;

    /// <summary>Pages per Pages frame.</summary>
    public int BatchPages { get; init; } = 32;

    public void Validate()
    {
        if (LocalityPages is < 1 or > 1024)
        {
            throw new ArgumentException("the locality window must be 1..1024 pages");
        }

        if (WorkingSetWindows is < 1 or > 8 || WorkingSetMinHits < 1 || WorkingSetMinHits > WorkingSetWindows)
        {
            throw new ArgumentException("working-set windows must be 1..8 and min hits 1..windows");
        }

        if (WorkingSetMaxPause is TimeSpan p && (p < TimeSpan.Zero || p > TimeSpan.FromMinutes(10)))
        {
            throw new ArgumentException("the working set's pause cap must be 0..10 minutes");
        }

        if (LivePasses is < 0 or > 8)
        {
            throw new ArgumentException("live passes must be 0..8");
        }

        if (PeerTimeout < TimeSpan.FromMilliseconds(Hello.MinPeerTimeoutMs) || PeerTimeout > TimeSpan.FromMilliseconds(Hello.MaxPeerTimeoutMs))
        {
            throw new ArgumentException($"the peer timeout must be {Hello.MinPeerTimeoutMs} ms..{Hello.MaxPeerTimeoutMs / 1000} s");
        }

        if (ReconnectWindow < TimeSpan.Zero || ReconnectWindow > TimeSpan.FromDays(1))
        {
            throw new ArgumentException("the reconnect window must be 0..24 h");
        }

        if (Channels is < 1 or > Hello.MaxChannels)
        {
            throw new ArgumentException($"channels must be 1..{Hello.MaxChannels}, not {Channels}");
        }

        if (MaxRounds < 1 || DowntimeLimit <= TimeSpan.Zero || BatchPages is < 1 or > 256)
        {
            throw new ArgumentException("max rounds, downtime limit and batch size must be positive (batch at most 256 pages)");
        }
    }
}

public enum PushOrder
{
    /// <summary>Linear for post-copy, fault-neighbourhood-then-recency for hybrid.</summary>
    Default,

    /// <summary>Ascending page index.</summary>
    Linear,

    /// <summary>Pages near recent faults first, then by how recently the VM touched them, then the rest.</summary>
    FaultNeighbourhoodThenRecency,

    /// <summary>Pages near recent faults first, then ascending.</summary>
    FaultNeighbourhood,
}
