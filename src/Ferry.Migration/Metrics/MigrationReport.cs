using System.Text.Json;
using System.Text.Json.Serialization;
using Ferry.Migration.Protocol;
using Ferry.Migration.Transport;

namespace Ferry.Migration.Metrics;

/// <summary>
/// The full account of one migration (docs/report-schema.md). Times in milliseconds, rates
/// per second, sizes in bytes. Built by the source from its own measurements and the
/// destination's (<see cref="DestinationMetrics"/>).
/// </summary>
public sealed record MigrationReport
{
    public int SchemaVersion { get; init; } = 1;
    public required string Id { get; init; }
    public required string Vm { get; init; }
    /// <summary>The strategy asked for (in JSON by its name: precopy, postcopy, hybrid, auto).</summary>
    public required StrategyKind Strategy { get; init; }
    public string? Source { get; init; }
    public string? Destination { get; init; }

    public required MigrationOutcome Outcome { get; init; }
    public string? Error { get; init; }

    /// <summary>Where the VM is now.</summary>
    public required VmLocation VmLocation { get; init; }

    public required OptionsReport Options { get; init; }
    public required DateTimeOffset StartedAt { get; init; }
    public double TotalTimeMs { get; init; }
    public double SetupTimeMs { get; init; }
    public double LiveTimeMs { get; init; }
    /// <summary>
    /// Source pause to destination resume. With both hosts on one machine ("shared-clock"), the
    /// two instants are read from the same monotonic clock; across machines ("estimated"), it is
    /// the source's part, the state's transit (its bytes at the link rate plus half the
    /// handshake round trip) and the destination's part (<see cref="Switchover"/>).
    /// </summary>
    public double DowntimeMs { get; init; }

    /// <summary>shared-clock or estimated (see <see cref="DowntimeMs"/>).</summary>
    public string? DowntimeMethod { get; init; }

    /// <summary>Source pause to the source receiving Resumed: an upper bound on the downtime (one extra trip and scheduling).</summary>
    public double DowntimeObservedMs { get; init; }
    public double PostCopyTimeMs { get; init; }

    /// <summary>From the destination's resume to its last absent page arriving.</summary>
    public double TimeToFullyResidentMs { get; init; }

    public long BytesOnWire { get; init; }
    public required BytesReport Bytes { get; init; }
    public required PagesReport Pages { get; init; }
    public int PrecopyRounds { get; init; }
    public List<RoundReport> Rounds { get; init; } = [];
    public required FaultReport NetworkFaults { get; init; }
    public required ArrivalReport PagesArrived { get; init; }
    public required PrefetchReport Prefetch { get; init; }
    public WorkingSetReport? WorkingSet { get; init; }

    /// <summary>Auto-converge: the guest's throttle over time (each step: when, after which round, the percentage of its time taken).</summary>
    public List<ThrottleStep> Throttle { get; init; } = [];

    /// <summary>Auto: what was decided, when, and on what figures (the first entry is the choice at the start).</summary>
    public List<StrategyDecision> Decisions { get; init; } = [];
    public required GuestReport Guest { get; init; }

    /// <summary>Achieved page throughput over the whole migration, bits per second.</summary>
    public double ThroughputBitsPerSecond { get; init; }
    public required TimelineReport Timeline { get; init; }

    /// <summary>Where the downtime went (null if the VM never resumed at the destination).</summary>
    public SwitchoverReport? Switchover { get; init; }

    /// <summary>The deadline on the destination's silence, and each time it was lost (detected, then recovered or not).</summary>
    public LivenessReport? Liveness { get; init; }

    /// <summary>The durable page file written in the pause (null: none): pages, bytes, and the time it added to the downtime.</summary>
    public PageFileReport? PageFile { get; init; }

    /// <summary>
    /// The .NET runtime's stops of every managed thread (<see cref="RuntimeSuspensions"/>): in the
    /// source's process during the pause, and in the destination's from its resume to its final
    /// report (completion plus 0.5 s). Null where the peer did not measure them.
    /// </summary>
    public RuntimeReport? Runtime { get; init; }

    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };
}

public sealed record OptionsReport(
    long BandwidthBitsPerSecond, double DowntimeLimitMs, int MaxRounds, double MaxLiveTimeMs, int LocalityPages, bool LocalityAdaptive,
    int WorkingSetWindows, int WorkingSetMinHits, double WorkingSetWindowMs, long WorkingSetCapBytes, bool WorkingSetPresend, int LivePasses,
    string PushOrder, int FaultNeighbourhoodPages, bool Compress, int BatchPages)
{
    /// <summary>Connections that carried the bulk pages (1: the main connection; N ≥ 2: N bulk connections).</summary>
    public int Channels { get; init; } = 1;
}

/// <summary>
/// The downtime, part by part: at the source, choosing the pause pages (last dirty-log
/// collection, working set), sending them, building and sending CPU/device state and the
/// absent map; on the link, the handshake's round trip (half of it is the state's propagation);
/// at the destination, from the state's arrival to the VM running; and, for reference, the
/// source's wait from sending the state to receiving Resumed. <paramref name="DevicePages"/>: the
/// pages the devices would touch next (rings, posted buffers) that the destination still lacked:
/// in the pause with a working set, else pushed first.
/// </summary>
public sealed record SwitchoverReport(double SelectMs, double PausePagesMs, long PausePagesBytes, double StateMs, long BundleBytes,
    double RoundTripMs, double DestinationMs, double WaitResumedMs, long DevicePages = 0, long DestinationAllocatedBytes = 0);

/// <summary>Runtime suspensions: the source's during the pause, the destination's from its resume to its final report.</summary>
public sealed record RuntimeReport(RuntimeSuspensionReport? SourcePause, RuntimeSuspensionReport? Destination)
{
    /// <summary>The source process's JIT from the migration's start to its end.</summary>
    public JitActivity? SourceJit { get; init; }

    /// <summary>The destination process's JIT from the resume until the VM's memory was all there (null: not measured by the peer).</summary>
    public JitActivity? DestinationJit { get; init; }
}

public sealed record BytesReport(long Live, long Pause, long Push, long FaultReplies, long Control, long Total);

/// <summary>Pages sent, by kind and phase; <paramref name="MemoryNonZero"/> = the non-zero pages of the memory delivered (each counted once).</summary>
/// <summary>Pages sent: all, non-zero, zero markers, resends, by phase, memory's non-zero pages, and resends that went as deltas (<c>--delta</c>).</summary>
public sealed record PagesReport(long Total, long Normal, long Zero, long Resent, long Live, long Pause, long Push, long FaultReplies, long MemoryNonZero, long Delta = 0);

public sealed record RoundReport(int Round, long Pages, long Bytes, double DurationMs, long DirtiedPages, double DirtyPagesPerSecond, double ExpectedDowntimeMs);

/// <summary>
/// Network faults: stalls of the guest on absent pages. <see cref="Requests"/> asked for a page
/// and its window; <see cref="InFlightRequests"/> asked again for a page already on its way
/// (requested in an earlier window); <see cref="AlreadyOnItsWay"/> requests the source found
/// claimed and written by the push or a window (the page arrived by that path);
/// <see cref="RescuedFromPush"/> requests for pages the push held unwritten, which the fault
/// path sent at once (sent twice: the push's copy is dropped). <see cref="Stages"/> says where the stall time went (null from older peers).
/// </summary>
public sealed record FaultReport(long Count, long Requests, double StallTotalMs, double StallP50Ms, double StallP99Ms, double StallMaxMs)
{
    public long InFlightRequests { get; init; }

    public long AlreadyOnItsWay { get; init; }

    public long RescuedFromPush { get; init; }

    /// <summary>How the fault path's threads ran: the source's request thread, and the destination's reply receiver (null from older peers).</summary>
    public FaultPathScheduling? SourceThread { get; init; }

    public FaultPathScheduling? DestinationThread { get; init; }

    public FaultStagesReport? Stages { get; init; }

    /// <summary>Garbage collections in the destination's process while pages were absent, and their total pause (every thread stops).</summary>
    public int DestinationGcCollections { get; init; }

    public double DestinationGcPauseMs { get; init; }
}

public sealed record ArrivalReport(long Live, long Pause, long Fault, long Prefetch, long Push);

public sealed record PrefetchReport(long Pages, long Hits, long Waste, IReadOnlyList<PrefetchDistance>? ByDistance = null);

/// <summary>
/// The locality windows' neighbours at one distance from their fault: how many were requested,
/// how many of those had arrived when their hit horizon passed (evaluated) and were touched by
/// then (hits: what the adaptive window learns from), and how many were touched by the end.
/// </summary>
public sealed record PrefetchDistance(int Distance, long Requested, long Evaluated, long Hits, long TouchedByEnd);

/// <summary>
/// The working set chosen for the pause: its pages and bytes, the estimator's windows, the pages
/// the pause budget allowed at the link's rate (null where the rate was not known), and how many
/// of the chosen pages the budget's deadline left for after the resume (a slow pause: they went
/// with the push instead).
/// </summary>
public sealed record WorkingSetReport(long Pages, long Bytes, int WindowsAvailable, long? BudgetPages = null, long Deferred = 0);

/// <summary>From <paramref name="AtMs"/> (after pre-copy round <paramref name="Round"/>) the guest was throttled to sleep <paramref name="Percent"/> % of its time.</summary>
public sealed record ThrottleStep(double AtMs, int Round, double Percent);

/// <summary>
/// One decision of the auto strategy: at <paramref name="AtMs"/> (from the start) it chose
/// <paramref name="Choice"/> (precopy, or hybrid) because of <paramref name="Reason"/>, from the
/// figures it had: the guest's dirty rate (distinct pages per second), the link's rate in pages
/// per second (null: not known, an uncapped link not yet measured), and the pre-copy round it
/// had reached (null: before any).
/// </summary>
public sealed record StrategyDecision(double AtMs, StrategyKind Choice, string Reason, double? DirtyPagesPerSecond, double? LinkPagesPerSecond, int? Round);

public sealed record GuestReport(double? IpsBefore, double? IpsDuring, double? IpsAfter, double? SlowdownDuring, ulong InstructionsAtPause)
{
    /// <summary>
    /// The guest's speed at the destination from its resume until its last absent page arrived
    /// (the post-copy phase), from the instruction counts at both ends; null where no page was
    /// absent at the resume. <see cref="IpsDuring"/> weighs it with the live phase's.
    /// </summary>
    public double? IpsPostCopy { get; init; }
}

/// <summary>Samples every ~25 ms, on the source's clock (ms since the migration started).</summary>
public sealed record TimelineReport(double PauseAtMs, double ResumeAtMs, List<TimelinePoint> Points)
{
    /// <summary>
    /// The bytes sent at <paramref name="ms"/>, between the source's samples <paramref name="samples"/>
    /// (in time order) taken linearly: after the resume the timeline's points are the destination's,
    /// at moments of its own, and the last source sample before one can be up to a sampling
    /// interval old (a whole interval of the push would show as no bytes at all). Before the
    /// first sample, its bytes; after the last, the last's.
    /// </summary>
    internal static long BytesAt(IReadOnlyList<TimelinePoint> samples, double ms)
    {
        if (samples.Count == 0)
        {
            return 0;
        }

        int after = 0;
        while (after < samples.Count && samples[after].Ms <= ms)
        {
            after++;
        }

        if (after == 0 || after == samples.Count)
        {
            return samples[after == 0 ? 0 : after - 1].Bytes;
        }

        TimelinePoint a = samples[after - 1], b = samples[after];
        double share = b.Ms > a.Ms ? (ms - a.Ms) / (b.Ms - a.Ms) : 1;
        return a.Bytes + (long)Math.Round((b.Bytes - a.Bytes) * share);
    }
}

/// <summary>Cumulative counts at a moment: bytes sent, network faults, and the guest's retired instructions (wherever it ran).</summary>
public sealed record TimelinePoint(double Ms, long Bytes, long Faults, ulong Instructions);

/// <summary>What the destination measured, sent in Verified and Report (JSON).</summary>
public sealed record DestinationMetrics
{
    public long PagesLive { get; init; }
    public long PagesPause { get; init; }
    public long PagesFault { get; init; }
    public long PagesPrefetch { get; init; }
    public long PagesPush { get; init; }
    public long Faults { get; init; }
    public long Requests { get; init; }
    public long InFlightRequests { get; init; }
    public FaultPathScheduling? FaultThread { get; init; }
    public double[] StallsMs { get; init; } = [];
    public FaultStagesReport? FaultStages { get; init; }

    /// <summary>Garbage collections in the destination's process from the resume until fully resident, and their pauses.</summary>
    public int GcCollections { get; init; }
    public double GcPauseMs { get; init; }

    /// <summary>The runtime's suspensions of the destination's process from the resume to this report (the final report's window includes 0.5 s after completion).</summary>
    public RuntimeSuspensionReport? RuntimeSuspensions { get; init; }

    /// <summary>The JIT's work in the destination's process from the resume until fully resident.</summary>
    public JitActivity? Jit { get; init; }
    public long PrefetchHits { get; init; }
    public PrefetchDistance[]? PrefetchByDistance { get; init; }
    public double RestoreMs { get; init; }

    /// <summary>What the destination allocated from the state's restore to the resume, in the pause (bytes).</summary>
    public long SwitchoverAllocatedBytes { get; init; }
    public double TimeToFullyResidentMs { get; init; }
    public double? IpsDuring { get; init; }
    public double? IpsAfter { get; init; }

    /// <summary>Destination samples: (ms since resume, faults, instructions).</summary>
    public List<TimelinePoint> Timeline { get; init; } = [];
}

/// <summary>
/// Liveness: the peer timeout, the silence at which a stalled destination was declared dead
/// (0 if never), and each loss of the destination after the switchover with its recovery.
/// </summary>
public sealed record LivenessReport(double PeerTimeoutMs, double DetectedAfterMs, IReadOnlyList<Interruption> Interruptions);

/// <summary>One loss of the destination after the switchover: when (ms since the start), why, and how the migration came back.</summary>
public sealed class Interruption(double atMs, string reason, double detectedAfterMs)
{
    public double AtMs { get; } = atMs;

    public string Reason { get; } = reason;

    /// <summary>The destination's silence when it was declared dead (0: the connection failed outright).</summary>
    public double DetectedAfterMs { get; } = detectedAfterMs;

    /// <summary>From the loss to the new connections (null: not recovered).</summary>
    public double? RecoveredAfterMs { get; set; }

    /// <summary>Connection attempts it took.</summary>
    public int Attempts { get; set; }

    /// <summary>Pages the destination still lacked at the reconnection (sent again, whatever had been in flight).</summary>
    public long PagesResent { get; set; }
}

/// <summary>
/// The page file of a migration: pages still owed at the switchover, its size, the time its live
/// part took (written and fsync'd while the VM ran), and the time its pause part took (the owed
/// pages dirtied since, the digest, fsync: in the downtime) with the pages it rewrote.
/// </summary>
public sealed record PageFileReport(long Pages, long Bytes, double LiveWriteMs, double PauseWriteMs, long PagesRewritten);
