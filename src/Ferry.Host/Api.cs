using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;
using Ferry.Migration;
using Ferry.Migration.Strategies;

namespace Ferry.Host;

// The control API's request and response bodies (JSON, camelCase). docs/api.md lists the routes.

public sealed record StartVmRequest
{
    public required string Name { get; init; }

    /// <summary>The guest ELF, base64 (or null with <see cref="Linux"/>).</summary>
    public string? Image { get; init; }

    /// <summary>A Linux boot instead of an ELF: firmware, kernel and initramfs loaded as QEMU's virt board does.</summary>
    public LinuxBootRequest? Linux { get; init; }

    public ulong MemoryBytes { get; init; } = 256UL << 20;

    public bool Icount { get; init; }

    public bool IdleSleep { get; init; } = true;

    /// <summary>Pause when this many instructions have retired, wherever the VM then runs.</summary>
    public ulong? StopAt { get; init; }

    /// <summary>A raw disk image on this host (virtio-blk), or null. A migration's destination opens the same path.</summary>
    public string? Disk { get; init; }

    /// <summary>A virtio-net card on a TAP: tap[,ifname=NAME][,bridge=BR][,mac=..] (the MAC defaults to one derived from the VM's name), or null.</summary>
    public string? Net { get; init; }
}

/// <summary>The files of a Linux boot, base64; see <c>LinuxBoot</c>.</summary>
public sealed record LinuxBootRequest
{
    /// <summary>The M-mode firmware (OpenSBI fw_dynamic.bin), or null to boot the kernel in M mode.</summary>
    public string? Firmware { get; init; }

    /// <summary>A RISC-V Linux Image, raw or gzip.</summary>
    public required string Kernel { get; init; }

    public string? Initrd { get; init; }

    public string CommandLine { get; init; } = "";
}

public sealed record VmStatus
{
    public required string Name { get; init; }

    /// <summary>In JSON by its lower-case name: incoming, arriving, running, paused, exited, stopped, departing, migrating, migrated, failed.</summary>
    public required VmState State { get; init; }

    public required ulong InstructionsRetired { get; init; }

    public required string Host { get; init; }

    public required ulong MemoryBytes { get; init; }

    public required bool Icount { get; init; }

    public ulong? StopAt { get; init; }

    public int? ExitStatus { get; init; }

    /// <summary>State digest (hex) once the VM has stopped executing (paused, exited, stopped).</summary>
    public string? Digest { get; init; }

    public required long ConsoleBytes { get; init; }

    /// <summary>Where the console of this host's part starts (non-zero for a VM that arrived by migration).</summary>
    public required long ConsoleStart { get; init; }

    public string? Migration { get; init; }

    public string? Detail { get; init; }

    /// <summary>Once migrated away: the control API URL of the host it went to (if the migration said), so that a console can follow it.</summary>
    public string? MovedTo { get; init; }

    /// <summary>The VM runs here after a migration's switchover but its source is away: pages it needs may be missing (Detail says how many).</summary>
    public bool WaitingOnNetwork { get; init; }

    /// <summary>Its disk image's path, or null.</summary>
    public string? Disk { get; init; }

    /// <summary>Its network card (tap,...,mac=.. with the MAC it has), or null.</summary>
    public string? Net { get; init; }

    /// <summary>The TAP interface its card uses on this host, or null.</summary>
    public string? Tap { get; init; }
}

public sealed record IncomingRequest
{
    public required string Name { get; init; }

    public required ulong MemoryBytes { get; init; }

    public bool Icount { get; init; }

    /// <summary>The VM's disk (the same path as at the source: storage both hosts see), or null.</summary>
    public string? Disk { get; init; }

    /// <summary>The VM's network card with its MAC; this host creates its own TAP on the bridge named there.</summary>
    public string? Net { get; init; }
}

public sealed record IncomingResponse(string Token, string DataEndpoint);

public sealed record MigrateRequest
{
    /// <summary>The destination's migration data endpoint, host:port.</summary>
    public required string Destination { get; init; }

    public required string Token { get; init; }

    public string Strategy { get; init; } = StrategyPolicy.NameOf(MigrationOptions.DefaultStrategy);

    public string Bandwidth { get; init; } = "unlimited";

    public double DowntimeLimitMs { get; init; } = 20;

    public int? MaxRounds { get; init; }

    public double? MaxLiveTimeMs { get; init; }

    public int? LocalityPages { get; init; }

    public bool? LocalityAdaptive { get; init; }

    public int? WorkingSetWindows { get; init; }

    public int? WorkingSetMinHits { get; init; }

    public long? WorkingSetMaxBytes { get; init; }

    public double? WorkingSetMaxPauseMs { get; init; }

    public bool? WorkingSetPresend { get; init; }

    public int? LivePasses { get; init; }

    public string? PushOrder { get; init; }

    public bool? Compress { get; init; }

    /// <summary>Connections for the bulk pages, 1..8 (default 1: the main connection), as QEMU's multifd channels.</summary>
    public int? Channels { get; init; }

    public bool? AutoConverge { get; init; }

    /// <summary>Send pages again as deltas, with a cache of this many bytes of what was sent (0 = off).</summary>
    public long? DeltaCacheBytes { get; init; }

    /// <summary>Silence before the destination is declared dead (default: the host's --peer-timeout).</summary>
    public double? PeerTimeoutMs { get; init; }

    /// <summary>After a lost link past the switchover, reconnect automatically for this long (default: the host's --reconnect-window).</summary>
    public double? ReconnectWindowMs { get; init; }

    /// <summary>Label of the destination for the report (e.g. its API URL).</summary>
    public string? DestinationLabel { get; init; }

    /// <summary>The destination's control API URL, if known: the source's record then says where the VM went (<see cref="VmStatus.MovedTo"/>).</summary>
    public string? DestinationApi { get; init; }
}

public sealed record MigrateResponse(string Id);

public sealed record MigrationStatus
{
    public required string Id { get; init; }

    public required string Vm { get; init; }

    public required string Strategy { get; init; }

    /// <summary>connecting, livecopy, switchover, postcopy, recovering, verifying, completed, failed, cancelled.</summary>
    public required string Phase { get; init; }

    public required bool Done { get; init; }

    public int Round { get; init; }

    public long BytesSent { get; init; }

    public long PagesRemaining { get; init; }

    public long PagesTotal { get; init; }

    public long FaultRequests { get; init; }

    public double ElapsedMs { get; init; }

    public double RateBitsPerSecond { get; init; }

    /// <summary>How long the destination has said nothing, while that is a stall (more than two heartbeat intervals); 0 otherwise.</summary>
    public double PeerSilentMs { get; init; }

    /// <summary>While recovering: why, and what the migration waits for.</summary>
    public string? Detail { get; init; }

    /// <summary>Reconnections after a lost link so far.</summary>
    public int Recoveries { get; init; }

    public Ferry.Migration.Metrics.MigrationReport? Report { get; init; }
}

public sealed record ErrorResponse(string Error);

/// <param name="MaxRequestBytes">The largest request body this host accepts (a VM start carries its images, base64).</param>
public sealed record HostInfo(string Name, string Version, string DataEndpoint, int Vms, long MaxRequestBytes = 0);

public static class ApiJson
{
    public static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        TypeInfoResolver = Resolver,
    };

    /// <summary>
    /// The API's bodies by the code System.Text.Json's source generator wrote at build time
    /// (<see cref="ApiJsonContext"/>), anything else (the small anonymous replies) by reflection.
    /// Without the generated code, each body type's first use compiled its serializer at run time
    /// (dynamic methods, each compiled optimized): a host's first migration request compiled 181
    /// of them at the start of the move; with it, 2 (the generated accessors are compiled at the
    /// JIT's quick tier instead).
    /// </summary>
    public static IJsonTypeInfoResolver Resolver { get; } = JsonTypeInfoResolver.Combine(ApiJsonContext.Default, new DefaultJsonTypeInfoResolver());
}

/// <summary>The control API's bodies, serialized by generated code (<see cref="ApiJson.Resolver"/>).</summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals)]
[JsonSerializable(typeof(StartVmRequest))]
[JsonSerializable(typeof(VmStatus))]
[JsonSerializable(typeof(List<VmStatus>))]
[JsonSerializable(typeof(IncomingRequest))]
[JsonSerializable(typeof(IncomingResponse))]
[JsonSerializable(typeof(MigrateRequest))]
[JsonSerializable(typeof(MigrateResponse))]
[JsonSerializable(typeof(MigrationStatus))]
[JsonSerializable(typeof(ErrorResponse))]
[JsonSerializable(typeof(HostInfo))]
public sealed partial class ApiJsonContext : JsonSerializerContext;
