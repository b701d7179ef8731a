using System.Net;

namespace Ferry.Host;

/// <summary>How a host agent is configured (`ferry host` options).</summary>
public sealed record HostOptions
{
    /// <summary>Where migrations arrive (TCP); port 0 picks a free port.</summary>
    public IPEndPoint DataEndpoint { get; init; } = new(IPAddress.Loopback, 7700);

    /// <summary>The control API's URL (http, or https with <see cref="Tls"/>); port 0 picks a free port. Not on loopback: a warning is logged.</summary>
    public string ApiUrl { get; init; } = "http://127.0.0.1:7701";

    /// <summary>If set, API calls must carry "Authorization: Bearer &lt;secret&gt;". Never empty.</summary>
    public string? Secret { get; init; }

    /// <summary>
    /// If set, the control API is HTTPS and migration connections (both ways) are TLS, each
    /// with mutual certificate authentication against the configured CA.
    /// </summary>
    public Ferry.Migration.Transport.TlsSettings? Tls { get; init; }

    /// <summary>A label for this host in statuses and reports.</summary>
    public string Name { get; init; } = Environment.MachineName;

    /// <summary>Largest VM this host accepts.</summary>
    public ulong MaxMemoryBytes { get; init; } = 16UL << 30;

    /// <summary>
    /// A small guest to migrate in-process once per strategy before the host reports ready, so
    /// that no real migration's downtime pays for just-in-time compilation. Null: no warm-up.
    /// </summary>
    public Ferry.Machine.Board.GuestImage? WarmUpImage { get; init; }

    /// <summary>
    /// With <see cref="WarmUpImage"/>: how many more times its migrations run, each after the
    /// runtime's delay for background compilation, so that the hot paths a first round left at
    /// the JIT's quick tiers are compiled optimized before a real move (<c>--warm-up-rounds</c>).
    /// </summary>
    public int WarmUpTieringRounds { get; init; } = DefaultWarmUpTieringRounds;

    /// <summary>Measured on this project's 2-core machines: docs/performance.md, "The runtime's tiering, during a host's first move".</summary>
    public const int DefaultWarmUpTieringRounds = 2;

    /// <summary>
    /// A Linux to boot once in a scratch machine before the host reports ready
    /// (<see cref="Ferry.Machine.Board.LinuxWarmUp"/>), so that the host's first Linux VM, often
    /// one that just arrived, does not run its first milliseconds in code the JIT has not compiled
    /// yet. Null: no such warm-up.
    /// </summary>
    public Ferry.Machine.Board.LinuxBootFiles? WarmUpLinux { get; init; }

    /// <summary>
    /// SO_PRIORITY of the fault connection's packets (Linux): where the host's qdisc sorts fault
    /// replies and requests. 6 (interactive) is the first band of the default pfifo_fast and
    /// of prio qdiscs; an htb class id (major &lt;&lt; 16 | minor) sends them straight into that class.
    /// Values above 6 need CAP_NET_ADMIN.
    /// </summary>
    public int FaultSocketPriority { get; init; } = 6;

    /// <summary>
    /// The data address peers dial for this host (`--advertise HOST:PORT`), as handed out with
    /// each incoming slot and used again by a source that reconnects; null: the listen address.
    /// </summary>
    public string? Advertise { get; init; }

    /// <summary>Default peer timeout (silence before a peer is declared dead) of the migrations this host starts.</summary>
    public TimeSpan PeerTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Default time during which a migration that lost its destination after the switchover reconnects by itself.</summary>
    public TimeSpan ReconnectWindow { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// Where this host keeps what must survive it (`--state-dir`): the page files of its outgoing
    /// post-copy migrations (pages still owed after the switchover), served again by the host
    /// restarted on the same directory. Null: nothing is kept.
    /// </summary>
    public string? StateDir { get; init; }

    /// <summary>How long a prepared incoming slot waits for its source.</summary>
    public TimeSpan IncomingLifetime { get; init; } = TimeSpan.FromMinutes(2);

    // Bounds on what peers and API callers can make this host hold (docs/failures.md, "Hostile input").

    /// <summary>How long a new migration connection may take to send its Hello.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Migration connections that have not yet presented a valid Hello; more are closed at once.</summary>
    public int MaxPendingConnections { get; init; } = 64;

    /// <summary>Incoming VMs (prepared slots and migrations in progress) at once: each holds a VM thread, and two more while it receives.</summary>
    public int MaxIncomingVms { get; init; } = 8;

    /// <summary>The largest control API request body (a VM start carries its images, base64).</summary>
    public long MaxRequestBytes { get; init; } = 128L << 20;

    /// <summary>Guest memory of all incoming VMs together.</summary>
    public ulong MaxIncomingMemoryBytes { get; init; } = 32UL << 30;
}
