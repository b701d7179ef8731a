using System.Runtime.CompilerServices;
using Ferry.Machine.Board;

namespace Ferry.Migration.Protocol;

/// <summary>The first frame on each connection. Validated field by field by the destination.</summary>
public sealed record Hello
{
    public const ulong Magic = 0x4749_4D59_5252_4546; // "FERRYMIG"
    public const ushort ProtocolVersion = 6;
    public const int TokenLength = 32;
    public const int MaxNameBytes = 64;

    /// <summary>The largest encoded Hello: what a destination reads from a peer before it knows who it is.</summary>
    public const int MaxEncodedSize = 256;

    public ushort Version { get; init; } = ProtocolVersion;

    public required ConnectionRole Role { get; init; }

    public required byte[] Token { get; init; }

    /// <summary>The VM name (it keeps its name on the destination).</summary>
    public required string VmName { get; init; }

    public required MachineConfig Machine { get; init; }

    public required StrategyKind Strategy { get; init; }

    /// <summary>Pauses the VM when it has retired this many instructions, wherever it runs (ulong.MaxValue: none).</summary>
    public ulong StopAt { get; init; } = ulong.MaxValue;

    /// <summary>Pages the destination requests around each network fault (1 = exact page).</summary>
    public ushort LocalityPages { get; init; } = 1;

    /// <summary>The destination adapts its window (up to <see cref="LocalityPages"/>) to its measured hit rate per distance from the fault.</summary>
    public bool LocalityAdaptive { get; init; }

    public uint PageSize { get; init; } = 4096;

    /// <summary>Both ends declare the other dead after this much silence (heartbeats keep an idle connection talking).</summary>
    public uint PeerTimeoutMs { get; init; } = DefaultPeerTimeoutMs;

    /// <summary>This connection resumes a migration that lost its connections after the switchover (same token).</summary>
    public bool Resume { get; init; }

    /// <summary>
    /// Connections that carry the bulk pages: 1 (the main connection, no bulk connections), or
    /// N in 2..<see cref="MaxChannels"/> bulk connections that the destination then expects.
    /// </summary>
    public byte Channels { get; init; } = 1;

    /// <summary>A bulk connection's index, 0..<see cref="Channels"/>-1 (0 on main and fault connections).</summary>
    public byte ChannelIndex { get; init; }

    public const int MaxChannels = 8;

    public const uint DefaultPeerTimeoutMs = 5000;
    public const uint MinPeerTimeoutMs = 100;
    public const uint MaxPeerTimeoutMs = 600_000;

    public byte[] Encode()
    {
        var buffer = new byte[MaxEncodedSize];
        var w = new WireWriter(buffer);
        w.U64(Magic);
        w.U16(Version);
        w.U8((byte)Role);
        w.Bytes(Token);
        w.String(VmName);
        w.U64(Machine.MemorySize);
        w.U8(Machine.Icount ? (byte)1 : (byte)0);
        w.U8(Machine.IdleSleep ? (byte)1 : (byte)0);
        w.U8((byte)Strategy);
        w.U64(StopAt);
        w.U16(LocalityPages);
        w.U8(LocalityAdaptive ? (byte)1 : (byte)0);
        w.U32(PageSize);
        w.U32(PeerTimeoutMs);
        w.U8(Resume ? (byte)1 : (byte)0);
        w.U8(Channels);
        w.U8(ChannelIndex);
        return buffer[..w.Position];
    }

    /// <summary>Decodes and checks what can be checked without the receiver's configuration.</summary>
    public static Hello Decode(ReadOnlySpan<byte> payload)
    {
        var r = new WireReader(payload);
        if (r.U64() != Magic)
        {
            throw new ProtocolException("not a Ferry migration stream (bad magic)");
        }

        ushort version = r.U16();
        if (version != ProtocolVersion)
        {
            throw new ProtocolException($"protocol version {version} is not supported (this host speaks version {ProtocolVersion})");
        }

        byte role = r.U8();
        if (role is not ((byte)ConnectionRole.Main or (byte)ConnectionRole.Fault or (byte)ConnectionRole.Bulk))
        {
            throw new ProtocolException($"unknown connection role {role}");
        }

        byte[] token = r.Bytes(TokenLength).ToArray();
        string name = r.String(MaxNameBytes);
        if (Ferry.Migration.VmName.Check(name) is string badName)
        {
            throw new ProtocolException(badName);
        }

        ulong memory = r.U64();
        bool icount = r.U8() != 0;
        bool idleSleep = r.U8() != 0;
        byte strategy = r.U8();
        if (!Strategies.StrategyPolicy.IsKnown(strategy))
        {
            throw new ProtocolException($"unknown strategy {strategy}");
        }

        ulong stopAt = r.U64();
        ushort locality = r.U16();
        byte adaptive = r.U8();
        if (adaptive > 1)
        {
            throw new ProtocolException($"bad adaptive-locality flag {adaptive}");
        }

        uint pageSize = r.U32();
        uint peerTimeout = r.U32();
        if (peerTimeout is < MinPeerTimeoutMs or > MaxPeerTimeoutMs)
        {
            throw new ProtocolException($"peer timeout {peerTimeout} ms is outside {MinPeerTimeoutMs}..{MaxPeerTimeoutMs} ms");
        }

        byte resume = r.U8();
        if (resume > 1)
        {
            throw new ProtocolException($"bad resume flag {resume}");
        }

        byte channels = r.U8();
        byte index = r.U8();
        if (channels is < 1 or > MaxChannels)
        {
            throw new ProtocolException($"{channels} bulk channels is outside 1..{MaxChannels}");
        }

        if (role == (byte)ConnectionRole.Bulk ? channels < 2 || index >= channels : index != 0)
        {
            throw new ProtocolException(role == (byte)ConnectionRole.Bulk
                ? $"bulk channel index {index} is outside this migration's {channels} channels"
                : $"channel index {index} on a connection that is not a bulk channel");
        }

        r.End();
        return new Hello
        {
            Version = version,
            Role = (ConnectionRole)role,
            Token = token,
            VmName = name,
            Machine = new MachineConfig { MemorySize = memory, Icount = icount, IdleSleep = idleSleep },
            Strategy = (StrategyKind)strategy,
            StopAt = stopAt,
            LocalityPages = locality,
            LocalityAdaptive = adaptive == 1,
            PageSize = pageSize,
            PeerTimeoutMs = peerTimeout,
            Resume = resume == 1,
            Channels = channels,
            ChannelIndex = index,
        };
    }
}

/// <summary>Destination's acceptance, or its refusal.</summary>
public sealed record HelloReply(bool Accepted, string Message)
{
    public byte[] Encode()
    {
        var buffer = new byte[8 + (Message.Length * 3)];
        var w = new WireWriter(buffer);
        w.U8(Accepted ? (byte)1 : (byte)0);
        w.String(Message.Length > 1000 ? Message[..1000] : Message);
        return buffer[..w.Position];
    }

    public static HelloReply Decode(ReadOnlySpan<byte> payload)
    {
        var r = new WireReader(payload);
        bool accepted = r.U8() == 1;
        string message = r.String(4000);
        r.End();
        return new HelloReply(accepted, message);
    }
}

/// <summary>A text reason (Cancel, Failed).</summary>
public static class ReasonMessage
{
    public static byte[] Encode(string reason)
    {
        string r = reason.Length > 1000 ? reason[..1000] : reason;
        var buffer = new byte[2 + (r.Length * 3)];
        var w = new WireWriter(buffer);
        w.String(r);
        return buffer[..w.Position];
    }

    public static string Decode(ReadOnlySpan<byte> payload)
    {
        var r = new WireReader(payload);
        string s = r.String(4000);
        r.End();
        return s;
    }
}

/// <summary>
/// Switchover. State (StateCodec bytes), then the pages still to come (post-copy and hybrid:
/// the destination marks them absent), then the digest of every page sent so far, which the
/// destination checks against what it received before it resumes the VM.
/// </summary>
public sealed record StateBundle(byte[] MachineState, ulong[]? AbsentPages, ulong SentDigest, uint SentPages)
{
    // Both run once per move, in the pause, with a loop over the absent map: compiled optimized at
    // once. At tier 0 their loops carried .NET's on-stack replacement, whose counters add up across
    // calls, so the optimized loop was compiled in some later move's pause (the tenth move of a
    // bench: 2.4 ms more state building at the source, 3.8 ms at the destination). PageBitmap's
    // loops are marked for the same reason.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public byte[] Encode()
    {
        int bitmapBytes = AbsentPages is null ? 0 : AbsentPages.Length * 8;
        var buffer = new byte[4 + MachineState.Length + 5 + bitmapBytes + 12 + 8];
        var w = new WireWriter(buffer);
        w.U32((uint)MachineState.Length);
        w.Bytes(MachineState);
        w.U8(AbsentPages is null ? (byte)0 : (byte)1);
        if (AbsentPages is not null)
        {
            w.U32((uint)AbsentPages.Length);
            foreach (ulong word in AbsentPages)
            {
                w.U64(word);
            }
        }

        w.U64(SentDigest);
        w.U32(SentPages);
        w.U64(System.IO.Hashing.Crc64.HashToUInt64(buffer.AsSpan(0, w.Position)));
        return buffer[..w.Position];
    }

    /// <summary>
    /// Decodes, checking the CRC-64 trailer first (the VM's CPU and devices are in here, and no
    /// later check covers them: one wrong byte would run at the destination), then the absent
    /// map against the receiver's page count.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static StateBundle Decode(ReadOnlySpan<byte> payload, int pageCount)
    {
        if (payload.Length < 8 || System.IO.Hashing.Crc64.HashToUInt64(payload[..^8]) != System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(payload[^8..]))
        {
            throw new ProtocolException("the switchover state is corrupt (CRC-64 mismatch)");
        }

        var r = new WireReader(payload[..^8]);
        uint stateLength = r.U32();
        if (stateLength > Ferry.Machine.State.StateCodec.MaxEncodedSize)
        {
            throw new ProtocolException($"machine state of {stateLength} bytes exceeds the limit");
        }

        byte[] state = r.Bytes((int)stateLength).ToArray();
        ulong[]? absent = null;
        if (r.U8() == 1)
        {
            uint words = r.U32();
            if (words != (uint)((pageCount + 63) / 64))
            {
                throw new ProtocolException($"absent-page map has {words} words, this VM needs {(pageCount + 63) / 64}");
            }

            absent = new ulong[words];
            for (int i = 0; i < words; i++)
            {
                absent[i] = r.U64();
            }

            int tail = pageCount & 63;
            if (tail != 0 && (absent[^1] >> tail) != 0)
            {
                throw new ProtocolException("absent-page map names pages beyond the end of RAM");
            }
        }

        ulong digest = r.U64();
        uint sent = r.U32();
        r.End();
        return new StateBundle(state, absent, digest, sent);
    }
}

/// <summary>Where the VM is when a source reconnects after losing its connections past the switchover.</summary>
public enum ResumeStatus : byte
{
    /// <summary>The destination resumed the VM and keeps it, waiting for the pages in the map.</summary>
    RunningHere = 1,

    /// <summary>The destination never resumed the VM (it failed before) and discarded its copy: the source owns it.</summary>
    NotResumed = 2,

    /// <summary>
    /// The destination has every page, verified them against the source's Complete and keeps the
    /// VM: the migration is complete (its Verified was lost with the link). Nothing follows.
    /// </summary>
    Completed = 3,
}

/// <summary>
/// Destination -> source, after Welcome on a resumed main connection: its status and, when it
/// runs the VM, the bitmap of the pages still absent there (all that the source must send again,
/// whatever was in flight when the link failed).
/// </summary>
public sealed record ResumeState(ResumeStatus Status, ulong[]? AbsentPages)
{
    public byte[] Encode()
    {
        int words = AbsentPages?.Length ?? 0;
        var buffer = new byte[1 + 4 + (words * 8)];
        var w = new WireWriter(buffer);
        w.U8((byte)Status);
        w.U32((uint)words);
        for (int i = 0; i < words; i++)
        {
            w.U64(AbsentPages![i]);
        }

        return buffer;
    }

    /// <summary>Decodes, checking the map against the receiver's own page count.</summary>
    public static ResumeState Decode(ReadOnlySpan<byte> payload, int pageCount)
    {
        var r = new WireReader(payload);
        byte status = r.U8();
        if (status is not ((byte)ResumeStatus.RunningHere or (byte)ResumeStatus.NotResumed or (byte)ResumeStatus.Completed))
        {
            throw new ProtocolException($"unknown resume status {status}");
        }

        uint words = r.U32();
        uint expected = status == (byte)ResumeStatus.RunningHere ? (uint)((pageCount + 63) / 64) : 0;
        if (words != expected)
        {
            throw new ProtocolException($"resume map has {words} words, expected {expected}");
        }

        ulong[]? map = status == (byte)ResumeStatus.RunningHere ? new ulong[words] : null;
        for (int i = 0; i < words; i++)
        {
            map![i] = r.U64();
        }

        int tail = pageCount & 63;
        if (map is not null && tail != 0 && (map[^1] >> tail) != 0)
        {
            throw new ProtocolException("resume map names pages beyond the end of RAM");
        }

        r.End();
        return new ResumeState((ResumeStatus)status, map);
    }
}

/// <summary>Destination -> source: page <see cref="FaultPage"/> faulted; send what is unsent of [First, First + Count).</summary>
public readonly record struct PageRequest(uint FaultPage, uint First, ushort Count)
{
    public const int Size = 10;

    public void Encode(Span<byte> buffer)
    {
        var w = new WireWriter(buffer);
        w.U32(FaultPage);
        w.U32(First);
        w.U16(Count);
    }

    public static PageRequest Decode(ReadOnlySpan<byte> payload, int pageCount)
    {
        var r = new WireReader(payload);
        var req = new PageRequest(r.U32(), r.U32(), r.U16());
        r.End();
        if (req.Count == 0 || req.First >= (uint)pageCount || req.Count > (uint)pageCount - req.First
            || req.FaultPage < req.First || req.FaultPage >= req.First + req.Count)
        {
            throw new ProtocolException($"page request {req} lies outside this VM's {pageCount} pages");
        }

        return req;
    }
}

/// <summary>Source: all pages sent. <see cref="MemoryDigest"/> covers every non-zero page of the source's memory at the pause.</summary>
public sealed record Complete(ulong MemoryDigest, uint NonZeroPages)
{
    public byte[] Encode()
    {
        var buffer = new byte[12];
        var w = new WireWriter(buffer);
        w.U64(MemoryDigest);
        w.U32(NonZeroPages);
        return buffer;
    }

    public static Complete Decode(ReadOnlySpan<byte> payload)
    {
        var r = new WireReader(payload);
        var c = new Complete(r.U64(), r.U32());
        r.End();
        return c;
    }
}

/// <summary>Destination's verdict and measurements (JSON, bounded).</summary>
public sealed record Verified(bool Ok, string Message, byte[] MetricsJson)
{
    public const int MaxMetricsBytes = 2 << 20;

    public byte[] Encode()
    {
        var buffer = new byte[1 + 2 + (Message.Length * 3) + 4 + MetricsJson.Length];
        var w = new WireWriter(buffer);
        w.U8(Ok ? (byte)1 : (byte)0);
        w.String(Message);
        w.U32((uint)MetricsJson.Length);
        w.Bytes(MetricsJson);
        return buffer[..w.Position];
    }

    public static Verified Decode(ReadOnlySpan<byte> payload)
    {
        var r = new WireReader(payload);
        bool ok = r.U8() == 1;
        string message = r.String(4000);
        uint n = r.U32();
        if (n > MaxMetricsBytes)
        {
            throw new ProtocolException($"metrics of {n} bytes exceed the limit");
        }

        byte[] json = r.Bytes((int)n).ToArray();
        r.End();
        return new Verified(ok, message, json);
    }
}

/// <summary>
/// Destination: the VM runs here now. Carries the destination's part of the downtime (state
/// received to VM started) and, so that two hosts on one machine can measure the downtime
/// exactly, its monotonic clock reading at the resume and its kernel boot id.
/// </summary>
public readonly record struct Resumed(double SwitchoverMs, long MonotonicTicks, Guid BootId)
{
    public byte[] Encode()
    {
        var buffer = new byte[32];
        var w = new WireWriter(buffer);
        w.U64((ulong)Math.Round(SwitchoverMs * 1000));
        w.U64((ulong)MonotonicTicks);
        w.Bytes(BootId.ToByteArray());
        return buffer;
    }

    public static Resumed Decode(ReadOnlySpan<byte> payload)
    {
        var r = new WireReader(payload);
        ulong micros = r.U64();
        long ticks = (long)r.U64();
        var boot = new Guid(r.Bytes(16));
        r.End();
        if (micros > 3_600_000_000)
        {
            throw new ProtocolException($"destination switchover time {micros} us is implausible");
        }

        return new Resumed(micros / 1000.0, ticks, boot);
    }
}

/// <summary>This machine's identity for clock comparisons: the kernel's boot id (Linux), else a per-process id.</summary>
public static class MonotonicClock
{
    public static Guid BootId { get; } = ReadBootId();

    /// <summary>True when Stopwatch ticks are CLOCK_MONOTONIC nanoseconds, shared by every process of one boot.</summary>
    public static bool SharedAcrossProcesses => OperatingSystem.IsLinux() && System.Diagnostics.Stopwatch.Frequency == 1_000_000_000;

    private static Guid ReadBootId()
    {
        try
        {
            if (OperatingSystem.IsLinux() && Guid.TryParse(File.ReadAllText("/proc/sys/kernel/random/boot_id").Trim(), out Guid id))
            {
                return id;
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }

        return Guid.NewGuid();
    }
}
