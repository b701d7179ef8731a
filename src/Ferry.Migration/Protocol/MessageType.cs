namespace Ferry.Migration.Protocol;

/// <summary>
/// Frame types of the migration protocol (docs/protocol.md). Every frame is
/// [u8 type | u8 flags (0) | u16 reserved (0) | u32 payload length] + payload, little-endian.
/// </summary>
public enum MessageType : byte
{
    /// <summary>Never valid: a zeroed header is a protocol error.</summary>
    Invalid = 0,

    /// <summary>Source -> destination, first frame on each connection: version, role, token, VM configuration.</summary>
    Hello = 1,

    /// <summary>Destination accepts the connection.</summary>
    Welcome = 2,

    /// <summary>Destination refuses (reason), then closes.</summary>
    Refused = 3,

    /// <summary>A batch of pages (live, pause, push, or a fault reply).</summary>
    Pages = 4,

    /// <summary>Switchover: CPU and device state, absent-page map, digest of the pages sent so far.</summary>
    StateBundle = 5,

    /// <summary>Destination: the VM runs here now.</summary>
    Resumed = 6,

    /// <summary>Destination -> source on the fault connection: a faulted page and its locality window.</summary>
    PageRequest = 7,

    /// <summary>Source: every page has been sent; digest of the source's memory at the pause.</summary>
    Complete = 8,

    /// <summary>Destination: memory verified (or not), with the destination's measurements.</summary>
    Verified = 9,

    /// <summary>Source abandons the migration before switchover; the VM stays at the source.</summary>
    Cancel = 10,

    /// <summary>Either side gives up, with a reason.</summary>
    Failed = 11,

    /// <summary>Destination, after Verified: its last measurements (the guest's speed after the migration).</summary>
    Report = 12,

    /// <summary>Either side, on every connection, when it has sent nothing else for a heartbeat interval: empty payload.</summary>
    Heartbeat = 13,

    /// <summary>Destination -> source after Welcome on a resumed main connection: where the VM is, and the pages still absent.</summary>
    ResumeState = 14,

    /// <summary>
    /// Source -> destination, on each bulk connection after the pause pages, before StateBundle on
    /// the main one: every page this connection carries before the switchover is in front of it.
    /// Empty payload.
    /// </summary>
    ChannelSync = 15,
}

/// <summary>Which connection of a migration a Hello opens.</summary>
public enum ConnectionRole : byte
{
    Main = 1,

    /// <summary>Page requests and their replies: never queued behind the bulk push.</summary>
    Fault = 2,

    /// <summary>
    /// One of a migration's bulk connections (<c>--channels N</c>, N ≥ 2; Hello's channel index):
    /// live, pause and pushed pages striped over N connections, as QEMU's multifd channels.
    /// </summary>
    Bulk = 3,
}

/// <summary>Why a page batch was sent (the destination's accounting follows it).</summary>
public enum PagePhase : byte
{
    Live = 1,
    Pause = 2,
    Push = 3,
    FaultReply = 4,
}

/// <summary>A migration strategy; each value has one <see cref="Strategies.StrategyPolicy"/>, whose name it has in JSON.</summary>
[System.Text.Json.Serialization.JsonConverter(typeof(Strategies.StrategyNameJsonConverter))]
public enum StrategyKind : byte
{
    PreCopy = 1,
    PostCopy = 2,
    Hybrid = 3,

    /// <summary>The source decides (pre-copy while it converges, else hybrid): the destination serves either.</summary>
    Auto = 4,
}
