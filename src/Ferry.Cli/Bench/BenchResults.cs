using System.Text.Json;
using System.Text.Json.Serialization;
using Ferry.Migration.Metrics;

namespace Ferry.Cli.Bench;

/// <summary>Everything one `ferry bench` run measured (results.json; schema in docs/report.md).</summary>
public sealed record BenchResults
{
    public int SchemaVersion { get; init; } = 1;
    public required DateTimeOffset StartedAt { get; init; }
    public required string Command { get; init; }
    public required MachineInfo Machine { get; init; }
    public required long BandwidthBitsPerSecond { get; init; }

    /// <summary>shaper: each side's own rate limiter on loopback; netns: the kernel's link (veth + tc htb), no limiter of their own.</summary>
    public string Link { get; init; } = "shaper";
    public required ulong MemoryBytes { get; init; }
    public required double DowntimeLimitMs { get; init; }
    public required int Repeat { get; init; }
    public required List<WorkloadInfo> Workloads { get; init; }

    /// <summary>With a Linux workload: boots to ready, Ferry's and QEMU's.</summary>
    public LinuxBootResult? LinuxBoot { get; init; }

    /// <summary>One entry per migration (Ferry's and QEMU's), in the order they ran.</summary>
    public required List<BenchRun> Runs { get; init; }

    /// <summary>Unmeasured moves that ran first, one per Ferry strategy (0 with <c>--first-moves</c>).</summary>
    public int WarmUpMoves { get; init; }

    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        WriteIndented = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };
}

/// <summary>How one bench migration ended. In results.json and results.csv by the kebab-case name.</summary>
[JsonConverter(typeof(KebabCaseEnumConverter<BenchOutcome>))]
public enum BenchOutcome
{
    Completed,

    /// <summary>Failed, with <see cref="BenchRun.Error"/>.</summary>
    Failed,

    Cancelled,

    /// <summary>A fixed pre-copy that did not fit the downtime limit and stopped and copied the rest.</summary>
    ForcedStopAndCopy,

    /// <summary>QEMU's pre-copy that never converged (cancelled).</summary>
    DidNotConverge,
}

public sealed record MachineInfo(string Cpu, int Cores, string Os, string Runtime, string? Qemu);

/// <summary>A workload: a guest and its configuration, plus the guest's speed where it was measured.</summary>
public sealed record WorkloadInfo(string Name, string Guest, string Config, string Description);

/// <summary>
/// One migration. Ferry's strategies are precopy, postcopy, hybrid; QEMU's are qemu-precopy and
/// qemu-postcopy. A figure one side cannot measure is null (the table says so).
/// </summary>
public sealed record BenchRun
{
    public required string Strategy { get; init; }
    public required string Workload { get; init; }
    public required int Repeat { get; init; }

    public required BenchOutcome Outcome { get; init; }
    public string? Error { get; init; }
    public double? TotalTimeMs { get; init; }
    public double? DowntimeMs { get; init; }
    public long? BytesOnWire { get; init; }
    public long? NetworkFaults { get; init; }
    public double? FaultStallMs { get; init; }
    public double? FaultStallP99Ms { get; init; }
    public double? FaultStallP50Ms { get; init; }

    /// <summary>Mean stall per network fault. Ferry: its measured stalls; QEMU: its postcopy-blocktime per page request.</summary>
    public double? StallPerFaultMs { get; init; }

    /// <summary>QEMU post-copy: the destination's postcopy-blocktime (ms, all vCPUs overlapped).</summary>
    public double? BlocktimeMs { get; init; }

    /// <summary>The guest's speed during the move, million instructions per second (QEMU: from its console progress after the resume).</summary>
    public double? GuestMipsDuring { get; init; }

    /// <summary>Ferry: the guest's speed at the destination from its resume until fully resident (the post-copy phase), MIPS.</summary>
    public double? GuestMipsPostCopy { get; init; }

    /// <summary>
    /// 1 - (guest speed during the migration) / (before it). Ferry: instructions retired (live
    /// phase and post-copy phase until fully resident). QEMU: the guest's console progress at the
    /// destination from its resume until the migration completed, against the source's before.
    /// </summary>
    public double? Slowdown { get; init; }
    public double? TimeToFullyResidentMs { get; init; }
    public int? Rounds { get; init; }
    public long? WorkingSetBytes { get; init; }

    /// <summary>The guest's speed before the migration, million instructions per second.</summary>
    public double? GuestMips { get; init; }

    /// <summary>Page bytes that had to cross (non-zero pages x 4 KiB) at the link rate: the link's own limit on the total time.</summary>
    public double? LinkLimitMs { get; init; }

    /// <summary>Ferry's full report (null for QEMU runs).</summary>
    public MigrationReport? Report { get; init; }

    // ---- The kvserver's client through the run (linux-kvserver; docs/results.md "Clients during the move")

    /// <summary>Requests the client sent (1,000/s over 4 connections, open loop).</summary>
    public int? ClientRequests { get; init; }

    /// <summary>The client-observed outage: the longest interval without a reply (ms) that overlaps the migration (from its start to its completion).</summary>
    public double? ClientOutageMs { get; init; }

    /// <summary>The longest interval without a reply over the whole client run (ms): above the outage, a stall of the host's, not of the move.</summary>
    public double? ClientLongestGapMs { get; init; }

    /// <summary>Where that interval began, in ms from the migration's start (negative: before it).</summary>
    public double? ClientOutageAtMs { get; init; }

    /// <summary>p50/p99 request latency (ms) of the requests sent before the migration, during it (to its completion) and after.</summary>
    public Ferry.Cli.Client.PhaseLatencies? ClientLatencyMs { get; init; }

    /// <summary>Requests that got a wrong reply or none (a broken connection fails its requests).</summary>
    public int? ClientFailedRequests { get; init; }

    /// <summary>Connections that broke (the client never reopens one).</summary>
    public int? ClientBrokenConnections { get; init; }

    public string? ClientFirstError { get; init; }

    /// <summary>Every request, for the latency plot (not in results.json).</summary>
    [JsonIgnore]
    public ClientTrace? ClientTrace { get; init; }
}
