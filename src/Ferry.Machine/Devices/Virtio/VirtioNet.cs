using System.Buffers.Binary;
using System.Diagnostics;

namespace Ferry.Machine.Devices.Virtio;

/// <summary>
/// virtio-net (device ID 1; virtio 1.x 5.1) over a TAP interface. Queues: 0 receive, 1 transmit,
/// 2 control. Features: VERSION_1, MAC, STATUS (link always up), CTRL_VQ and GUEST_ANNOUNCE (after
/// a move the device sets the announce bit with a configuration interrupt; Linux's virtio_net then
/// sends gratuitous ARPs and acknowledges with VIRTIO_NET_CTRL_ANNOUNCE_ACK on the control queue,
/// which clears the bit), INDIRECT_DESC. No offloads: every buffer carries the 12-byte
/// virtio_net_hdr (num_buffers = 1) and one whole frame.
///
/// Transmit happens at the notify, on the machine's thread (a frame the TAP cannot take is
/// dropped). Receive: a reader thread of its own reads the TAP into a bounded ring of 256
/// frames (dropping when it is full, as a card does) and wakes the machine; the frames are written
/// into guest RAM only on the machine's thread, at run boundaries (the board's safe points) or
/// when the driver adds receive buffers, never from the reader thread while the hart runs.
/// Frames waiting in the card's ring at a save are state: they cross with the VM and reach the guest first.
///
/// Across a migration the card follows the VM (<see cref="NetAttachment"/>): the destination's
/// card stands by (its reader keeps only the last <see cref="StandbyLookbackMs"/> of what the bridge
/// floods to it), then holds what arrives once the source has paused (in the kernel's TAP queue, as
/// QEMU's card does while its VM is stopped), after the standby's recent frames: those arrived
/// between the source's link going down and this card hearing of the pause, and the source never saw them;
/// the source's card takes its TAP's link down at the pause, so that the bridge forgets the VM's
/// port and floods its frames, the destination's among others. When the VM runs on the
/// destination (or again on the source), the card sends QEMU's self-announcement from the host
/// side (a broadcast RARP from the VM's MAC, in QEMU's default rounds: at 0, 50, 200, 450 and
/// 800 ms) and asks the guest
/// for its own (GUEST_ANNOUNCE).
/// </summary>
public sealed class VirtioNet : VirtioDevice
{
    public const ulong FeatureMac = 1UL << 5, FeatureStatus = 1UL << 16, FeatureCtrlVq = 1UL << 17, FeatureGuestAnnounce = 1UL << 21;
    public const ushort StatusLinkUp = 1, StatusAnnounce = 2;
    public const int HeaderSize = 12;
    public const int RingFrames = 256;
    public const int MaxFrame = 2048;

    /// <summary>
    /// How far back a standby card keeps what the bridge sent it: once the source's link is down,
    /// the VM's frames flood to this card before the destination hears of the pause (the pause's
    /// first pages or state, behind what the link still carries), and they must not be lost. Older
    /// frames went to the source too (broadcasts), and are not the VM's to receive twice.
    /// </summary>
    public const int StandbyLookbackMs = 50;

    /// <summary>This card's lookback (<see cref="StandbyLookbackMs"/> unless set; a test on a loaded machine widens it).</summary>
    public TimeSpan StandbyLookback { get; set; } = TimeSpan.FromMilliseconds(StandbyLookbackMs);

    /// <summary>Frames a standby card keeps at most (the oldest go first).</summary>
    public const int StandbyFrames = 64;

    /// <summary>Waiting frames a saved state carries at most (bytes, with their 2-byte lengths): the rest are dropped, as a card's FIFO would be.</summary>
    public const int MaxCarriedBytes = 24 << 10;
    public const byte CtrlAnnounce = 3, CtrlAnnounceAck = 0, CtrlOk = 0, CtrlError = 1;

    private readonly TapDevice? _tap;
    private readonly Action _wake;
    private readonly byte[][] _ring = new byte[RingFrames][];
    private readonly int[] _ringLength = new int[RingFrames];
    private readonly byte[] _tx = new byte[65536 + HeaderSize];
    private readonly byte[] _mac;
    private readonly Thread? _reader;
    private volatile bool _stopping;
    private int _head, _tail; // reader writes _tail, machine thread _head
    private bool _rxBlocked;
    private ushort _status = StatusLinkUp;
    private volatile NetAttachment _attachment = NetAttachment.Attached;
    private readonly List<byte[]> _carried = []; // frames the VM brought in its state: delivered first (machine thread)
    private readonly byte[][] _standby = new byte[StandbyFrames][];
    private readonly int[] _standbyLength = new int[StandbyFrames];
    private readonly long[] _standbyAt = new long[StandbyFrames];
    private int _standbyFirst, _standbyCount; // under _standbyLock
    private readonly object _standbyLock = new();
    private readonly ManualResetEventSlim _readable = new(true); // reset while the card holds
    private readonly object _announceLock = new();
    private Timer? _announceTimer;
    private int _announceRound;
    private long _selfAnnouncements;

    public VirtioNet(NetBackendOptions options, Action wake)
        : this(options.Mac ?? throw new ArgumentException("the network card needs its MAC", nameof(options)), wake, new TapDevice(options.Ifname, options.Bridge))
    {
    }

    /// <summary>A card on <paramref name="tap"/> (null: a card whose frames go nowhere, for tests).</summary>
    public VirtioNet(byte[] mac, Action wake, TapDevice? tap)
    {
        _mac = (byte[])mac.Clone();
        _wake = wake;
        _tap = tap;
        for (int i = 0; i < RingFrames; i++)
        {
            _ring[i] = new byte[MaxFrame];
        }

        for (int i = 0; i < StandbyFrames; i++)
        {
            _standby[i] = new byte[MaxFrame];
        }

        if (tap is not null)
        {
            _reader = new Thread(ReadFrames) { IsBackground = true, Name = $"virtio-net {tap.Name}" };
            _reader.Start();
        }
    }

    public string? Interface => _tap?.Name;

    public ReadOnlySpan<byte> Mac => _mac;

    public ushort LinkStatus => _status;

    /// <summary>Frames sent, received into the guest, and dropped (no room in the ring or no guest buffer fits).</summary>
    public long FramesSent { get; private set; }

    public long FramesReceived { get; private set; }

    /// <summary>Announcements the guest acknowledged (VIRTIO_NET_CTRL_ANNOUNCE_ACK): it sent its gratuitous ARPs.</summary>
    public long AnnouncementsAcknowledged { get; private set; }

    public long FramesDropped => Interlocked.Read(ref _dropped);

    /// <summary>Self-announcements (RARP from the VM's MAC) written to the TAP.</summary>
    public long SelfAnnouncements => Interlocked.Read(ref _selfAnnouncements);

    /// <summary>Where the card stands in a migration.</summary>
    public NetAttachment Attachment => _attachment;

    /// <summary>QEMU's announce parameters, as its query-migrate-parameters gives them (7.2): announce-initial, -step, -max (ms) and -rounds.</summary>
    public const int AnnounceInitialMs = 50, AnnounceStepMs = 100, AnnounceMaxMs = 550, AnnounceRounds = 5;

    /// <summary>
    /// The delay before each announcement after the first (sent at once), as net/announce.c's
    /// qemu_announce_timer_step computes it: initial + (rounds − round − 1) × step, at most max,
    /// with round counting down from rounds − 1: 50, 150, 250 and 350 ms by default.
    /// </summary>
    public static int AnnounceDelayMs(int sent) => Math.Min(AnnounceMaxMs, AnnounceInitialMs + ((sent - 1) * AnnounceStepMs));

    private long _dropped;

    public override string Name => "virtio-net";

    public override uint DeviceId => 1;

    public override ulong DeviceFeatures => FeatureVersion1 | FeatureIndirectDesc | FeatureMac | FeatureStatus | FeatureCtrlVq | FeatureGuestAnnounce;

    public override int QueueCount => 3;

    public override int ConfigSize => 8;

    public override bool HasExternalWork => !_rxBlocked && (_carried.Count != 0 || Volatile.Read(ref _tail) != _head);

    public override byte ReadConfig(int offset) => offset < 6 ? _mac[offset] : (byte)(_status >> (8 * (offset - 6)));

    /// <summary>Queues a frame as if it came from the TAP (tests; any thread): false if the ring is full.</summary>
    public bool Inject(ReadOnlySpan<byte> frame)
    {
        int tail = _tail;
        if (tail - Volatile.Read(ref _head) >= RingFrames || frame.Length > MaxFrame)
        {
            Interlocked.Increment(ref _dropped);
            return false;
        }

        frame.CopyTo(_ring[tail % RingFrames]);
        _ringLength[tail % RingFrames] = frame.Length;
        Volatile.Write(ref _tail, tail + 1);
        _wake();
        return true;
    }

    /// <summary>Raises the announce bit with a configuration interrupt, if the driver negotiated GUEST_ANNOUNCE and is up.</summary>
    public void Announce()
    {
        if (Transport.Negotiated(FeatureGuestAnnounce) && (Transport.Status & VirtioMmio.StatusDriverOk) != 0)
        {
            _status |= StatusAnnounce;
            Transport.NotifyConfigChange();
        }
    }

    /// <summary>A migration's destination, before the source pauses: the card keeps only the last <see cref="StandbyLookbackMs"/> of what the bridge sends it.</summary>
    public void StandBy()
    {
        lock (_standbyLock)
        {
            _standbyCount = 0;
            _attachment = NetAttachment.Standby;
        }
    }

    /// <summary>
    /// A migration's destination once the source paused: the standby's frames of the last
    /// <see cref="StandbyLookbackMs"/> join the card's ring, and what comes next waits in the TAP's
    /// kernel queue for the VM to run here.
    /// </summary>
    public void Hold()
    {
        lock (_standbyLock)
        {
            if (_attachment is NetAttachment.Standby or NetAttachment.Attached)
            {
                _readable.Reset();
                if (_attachment == NetAttachment.Standby)
                {
                    // Before the attachment changes: until then the reader queues its frames here,
                    // under this lock, so the ring has one writer at a time.
                    KeepRecentStandbyFrames();
                }

                _attachment = NetAttachment.Holding;
            }
        }
    }

    /// <summary>Frames the card read while it stood by, and those of them it passed to its ring at the pause (they arrived within the lookback).</summary>
    public long StandbyFramesRead => Interlocked.Read(ref _standbyRead);

    /// <inheritdoc cref="StandbyFramesRead"/>
    public long StandbyFramesKept => Interlocked.Read(ref _standbyKept);

    private long _standbyKept, _standbyRead;

    private void KeepRecentStandbyFrames()
    {
        long since = Stopwatch.GetTimestamp() - (long)(StandbyLookback.TotalSeconds * Stopwatch.Frequency);
        for (int i = 0; i < _standbyCount; i++)
        {
            int slot = (_standbyFirst + i) % StandbyFrames;
            if (_standbyAt[slot] >= since && Inject(_standby[slot].AsSpan(0, _standbyLength[slot])))
            {
                Interlocked.Increment(ref _standbyKept);
            }
        }

        _standbyCount = 0;
    }

    private void KeepInStandby(ReadOnlySpan<byte> frame)
    {
        lock (_standbyLock)
        {
            if (_attachment != NetAttachment.Standby)
            {
                Inject(frame); // held or attached since the read began
                return;
            }

            Interlocked.Increment(ref _standbyRead);
            if (frame.Length > MaxFrame)
            {
                return;
            }

            if (_standbyCount == StandbyFrames)
            {
                _standbyFirst = (_standbyFirst + 1) % StandbyFrames;
                _standbyCount--;
            }

            int slot = (_standbyFirst + _standbyCount) % StandbyFrames;
            frame.CopyTo(_standby[slot]);
            _standbyLength[slot] = frame.Length;
            _standbyAt[slot] = Stopwatch.GetTimestamp();
            _standbyCount++;
        }
    }

    /// <summary>A migration's source, paused: the TAP's link goes down, so that the bridge forgets this port for the VM's MAC.</summary>
    public void Depart()
    {
        _attachment = NetAttachment.Departed;
        SetLink(false);
    }

    /// <summary>The last failure to bring the TAP's link up or down (the move goes on: the announcements teach the bridge), or null.</summary>
    public string? LinkError { get; private set; }

    private void SetLink(bool up)
    {
        try
        {
            _tap?.SetLinkUp(up);
        }
        catch (IOException e)
        {
            LinkError = e.Message;
        }
    }

    /// <summary>
    /// The VM runs here now (after a move, or again after a move that failed): the card reads its
    /// TAP again (link up), announces the VM's MAC from the host side at once and in QEMU's rounds,
    /// and (unless <paramref name="guestAnnounce"/> is false: later, by <see cref="Announce"/>)
    /// asks the guest to announce itself. Safe point only.
    /// </summary>
    public void Arrive(bool guestAnnounce = true)
    {
        NetAttachment was = _attachment;
        if (was == NetAttachment.Departed)
        {
            SetLink(true);
        }

        lock (_standbyLock)
        {
            if (_attachment == NetAttachment.Standby)
            {
                KeepRecentStandbyFrames(); // the VM came without a pause being heard of first
            }

            _attachment = NetAttachment.Attached;
        }

        _readable.Set();
        if (_tap is not null)
        {
            lock (_announceLock)
            {
                _announceRound = 0;
                _announceTimer ??= new Timer(_ => AnnounceRound(), null, Timeout.Infinite, Timeout.Infinite);
                AnnounceRound();
            }
        }

        if (guestAnnounce)
        {
            Announce();
        }
    }

    /// <summary>QEMU's self-announcement (net/announce.c): a broadcast RARP "request reverse" whose sender and target are <paramref name="mac"/>, padded to 60 bytes.</summary>
    public static void WriteSelfAnnouncement(ReadOnlySpan<byte> mac, Span<byte> frame)
    {
        frame[..60].Clear();
        frame[..6].Fill(0xFF);
        mac.CopyTo(frame[6..]);
        BinaryPrimitives.WriteUInt16BigEndian(frame[12..], 0x8035); // ETH_P_RARP
        BinaryPrimitives.WriteUInt16BigEndian(frame[14..], 1);      // Ethernet
        BinaryPrimitives.WriteUInt16BigEndian(frame[16..], 0x0800); // IPv4
        frame[18] = 6;
        frame[19] = 4;
        BinaryPrimitives.WriteUInt16BigEndian(frame[20..], 3);      // request reverse
        mac.CopyTo(frame[22..]);
        mac.CopyTo(frame[32..]);
    }

    private void AnnounceRound()
    {
        lock (_announceLock)
        {
            if (_stopping || _tap is null || _attachment != NetAttachment.Attached)
            {
                return;
            }

            Span<byte> frame = stackalloc byte[60];
            WriteSelfAnnouncement(_mac, frame);
            if (_tap.Send(frame))
            {
                Interlocked.Increment(ref _selfAnnouncements);
            }

            if (++_announceRound < AnnounceRounds)
            {
                _announceTimer?.Change(AnnounceDelayMs(_announceRound), Timeout.Infinite);
            }
        }
    }

    public override void ProcessQueue(int queue, SplitQueue q, GuestDma dma)
    {
        switch (queue)
        {
            case 0:
                _rxBlocked = false;
                Deliver(q, dma);
                break;
            case 1:
                Transmit(q, dma);
                break;
            default:
                Control(q, dma);
                break;
        }
    }

    public override void Poll(GuestDma dma)
    {
        SplitQueue rx = Transport.Queues[0];
        if (!rx.Ready)
        {
            _rxBlocked = true;
            return;
        }

        ushort before = rx.UsedIndex;
        Deliver(rx, dma);
        if (rx.UsedIndex != before)
        {
            Transport.NotifyUsed(0);
        }
    }

    public override void Reset()
    {
        _status = StatusLinkUp;
        _rxBlocked = false;
    }

    /// <summary>
    /// The card's state: MAC, status, and the frames that reached the card but not yet the guest
    /// (u16 count, then each as u16 length and its bytes): they cross with the VM, so that what
    /// the network delivered before the pause is not lost in the move.
    /// </summary>
    public override byte[] SaveDeviceState()
    {
        int head = _head, tail = Volatile.Read(ref _tail);
        var frames = new List<ReadOnlyMemory<byte>>(_carried.Count + (tail - head));
        int size = 10;
        foreach (byte[] f in _carried)
        {
            Carry(f);
        }

        for (int i = head; i != tail; i++)
        {
            Carry(_ring[i % RingFrames].AsMemory(0, _ringLength[i % RingFrames]));
        }

        var s = new byte[size];
        _mac.CopyTo(s, 0);
        BinaryPrimitives.WriteUInt16LittleEndian(s.AsSpan(6), _status);
        BinaryPrimitives.WriteUInt16LittleEndian(s.AsSpan(8), (ushort)frames.Count);
        int at = 10;
        foreach (ReadOnlyMemory<byte> f in frames)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(s.AsSpan(at), (ushort)f.Length);
            f.Span.CopyTo(s.AsSpan(at + 2));
            at += 2 + f.Length;
        }

        return s;

        void Carry(ReadOnlyMemory<byte> frame)
        {
            if (size - 10 + 2 + frame.Length > MaxCarriedBytes)
            {
                return; // beyond what a state carries: lost in the move, as before a card's FIFO
            }

            frames.Add(frame);
            size += 2 + frame.Length;
        }
    }

    public override void RestoreDeviceState(ReadOnlySpan<byte> state)
    {
        if (state.Length < 10)
        {
            throw new InvalidDataException($"virtio-net state is {state.Length} bytes, less than 10");
        }

        ushort status = BinaryPrimitives.ReadUInt16LittleEndian(state[6..]);
        if ((status & ~(StatusLinkUp | StatusAnnounce)) != 0 || (state[0] & 1) != 0)
        {
            throw new InvalidDataException("virtio-net state: bad status bits or a multicast MAC");
        }

        int count = BinaryPrimitives.ReadUInt16LittleEndian(state[8..]);
        if (state.Length - 10 > MaxCarriedBytes)
        {
            throw new InvalidDataException($"virtio-net state: {state.Length - 10} bytes of waiting frames, more than {MaxCarriedBytes}");
        }

        var carried = new List<byte[]>(count);
        ReadOnlySpan<byte> rest = state[10..];
        for (int i = 0; i < count; i++)
        {
            int length = rest.Length >= 2 ? BinaryPrimitives.ReadUInt16LittleEndian(rest) : -1;
            if (length is < 14 or > MaxFrame || rest.Length < 2 + length)
            {
                throw new InvalidDataException($"virtio-net state: waiting frame {i} is truncated or not 14..{MaxFrame} bytes");
            }

            carried.Add(rest.Slice(2, length).ToArray());
            rest = rest[(2 + length)..];
        }

        if (!rest.IsEmpty)
        {
            throw new InvalidDataException($"virtio-net state: {rest.Length} bytes after the waiting frames");
        }

        state[..6].CopyTo(_mac);
        _status = status;
        _rxBlocked = false;
        _carried.Clear();
        _carried.AddRange(carried);
        if (_attachment != NetAttachment.Holding)
        {
            Volatile.Write(ref _head, Volatile.Read(ref _tail)); // frames from before the VM came are not its own
        }

        // (a holding card's ring has only what came after the source paused, and the standby's last
        // StandbyLookbackMs: it follows the frames the source's card carried)
    }

    public override void Dispose()
    {
        _stopping = true;
        _readable.Set();
        lock (_announceLock)
        {
            _announceTimer?.Dispose();
        }

        _reader?.Join(1000);
        _tap?.Dispose();
        base.Dispose();
    }

    private void Deliver(SplitQueue q, GuestDma dma)
    {
        Span<byte> header = stackalloc byte[HeaderSize];
        header.Clear();
        header[10] = 1; // num_buffers
        while (_carried.Count != 0)
        {
            if (!q.TryPeek(dma))
            {
                _rxBlocked = true;
                return;
            }

            byte[] frame = _carried[0];
            if (q.WritableLength < (ulong)(HeaderSize + frame.Length))
            {
                throw new VirtioDriverException($"receive buffer of {q.WritableLength} bytes is too small for a {frame.Length}-byte frame and its header");
            }

            q.WriteChain(dma, 0, header);
            q.WriteChain(dma, HeaderSize, frame);
            q.Push(dma, (uint)(HeaderSize + frame.Length));
            _carried.RemoveAt(0);
            FramesReceived++;
        }

        while (Volatile.Read(ref _tail) != _head)
        {
            if (!q.TryPeek(dma))
            {
                _rxBlocked = true; // the driver's notify on queue 0 (new buffers) delivers the rest
                return;
            }

            int slot = _head % RingFrames;
            int length = _ringLength[slot];
            if (q.WritableLength < (ulong)(HeaderSize + length))
            {
                throw new VirtioDriverException($"receive buffer of {q.WritableLength} bytes is too small for a {length}-byte frame and its header");
            }

            q.WriteChain(dma, 0, header);
            q.WriteChain(dma, HeaderSize, _ring[slot].AsSpan(0, length));
            q.Push(dma, (uint)(HeaderSize + length));
            Volatile.Write(ref _head, _head + 1);
            FramesReceived++;
        }
    }

    private void Transmit(SplitQueue q, GuestDma dma)
    {
        while (q.TryPeek(dma))
        {
            ulong total = q.ReadableLength;
            if (total < HeaderSize || total > (ulong)_tx.Length)
            {
                throw new VirtioDriverException($"transmit buffer of {total} bytes is not a header and a frame up to {_tx.Length - HeaderSize} bytes");
            }

            int n = q.ReadChain(dma, HeaderSize, _tx.AsSpan(0, (int)total - HeaderSize));
            if (_tap is null || !_tap.Send(_tx.AsSpan(0, n)))
            {
                Interlocked.Increment(ref _dropped);
            }
            else
            {
                FramesSent++;
            }

            q.Push(dma, 0);
        }
    }

    private void Control(SplitQueue q, GuestDma dma)
    {
        Span<byte> command = stackalloc byte[2];
        while (q.TryPeek(dma))
        {
            if (q.ReadableLength < 2 || q.WritableLength < 1)
            {
                throw new VirtioDriverException("control command without class, command or ack byte");
            }

            q.ReadChain(dma, 0, command);
            byte ack = CtrlError;
            if (command[0] == CtrlAnnounce && command[1] == CtrlAnnounceAck)
            {
                _status &= unchecked((ushort)~StatusAnnounce);
                AnnouncementsAcknowledged++;
                ack = CtrlOk;
            }

            q.WriteChain(dma, q.WritableLength - 1, [ack]);
            q.Push(dma, 1);
        }
    }

    private void ReadFrames()
    {
        byte[] scratch = new byte[MaxFrame];
        while (!_stopping)
        {
            if (!_readable.IsSet)
            {
                _readable.Wait(100); // holding: the frames wait in the kernel for the VM to run here
                continue;
            }

            int n;
            try
            {
                n = _tap!.Receive(scratch, 100);
            }
            catch (IOException)
            {
                return;
            }

            if (n <= 0)
            {
                continue;
            }

            if (_attachment == NetAttachment.Standby)
            {
                KeepInStandby(scratch.AsSpan(0, n));
            }
            else
            {
                Inject(scratch.AsSpan(0, n));
            }
        }
    }
}

/// <summary>A network card's place in a migration (see <see cref="VirtioNet"/>).</summary>
public enum NetAttachment
{
    /// <summary>The VM runs with this card: frames flow.</summary>
    Attached,

    /// <summary>A destination before the source's pause: frames are read, and only the last <see cref="VirtioNet.StandbyLookbackMs"/> of them kept.</summary>
    Standby,

    /// <summary>A destination after the source's pause: frames wait in the TAP's kernel queue.</summary>
    Holding,

    /// <summary>A paused source: the TAP's link is down.</summary>
    Departed,
}
