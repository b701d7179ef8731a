using System.Buffers.Binary;

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
/// Frames waiting at a save or restore are not state: a migration drops them (TCP retransmits).
/// </summary>
public sealed class VirtioNet : VirtioDevice
{
    public const ulong FeatureMac = 1UL << 5, FeatureStatus = 1UL << 16, FeatureCtrlVq = 1UL << 17, FeatureGuestAnnounce = 1UL << 21;
    public const ushort StatusLinkUp = 1, StatusAnnounce = 2;
    public const int HeaderSize = 12;
    public const int RingFrames = 256;
    public const int MaxFrame = 2048;
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

    private long _dropped;

    public override string Name => "virtio-net";

    public override uint DeviceId => 1;

    public override ulong DeviceFeatures => FeatureVersion1 | FeatureIndirectDesc | FeatureMac | FeatureStatus | FeatureCtrlVq | FeatureGuestAnnounce;

    public override int QueueCount => 3;

    public override int ConfigSize => 8;

    public override bool HasExternalWork => !_rxBlocked && Volatile.Read(ref _tail) != _head;

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

    public override byte[] SaveDeviceState()
    {
        var s = new byte[8];
        _mac.CopyTo(s, 0);
        BinaryPrimitives.WriteUInt16LittleEndian(s.AsSpan(6), _status);
        return s;
    }

    public override void RestoreDeviceState(ReadOnlySpan<byte> state)
    {
        if (state.Length != 8)
        {
            throw new InvalidDataException($"virtio-net state is {state.Length} bytes, not 8");
        }

        ushort status = BinaryPrimitives.ReadUInt16LittleEndian(state[6..]);
        if ((status & ~(StatusLinkUp | StatusAnnounce)) != 0 || (state[0] & 1) != 0)
        {
            throw new InvalidDataException("virtio-net state: bad status bits or a multicast MAC");
        }

        state[..6].CopyTo(_mac);
        _status = status;
        _rxBlocked = false;
        Volatile.Write(ref _head, Volatile.Read(ref _tail)); // frames that came before the VM did are dropped
    }

    public override void Dispose()
    {
        _stopping = true;
        _reader?.Join(1000);
        _tap?.Dispose();
        base.Dispose();
    }

    private void Deliver(SplitQueue q, GuestDma dma)
    {
        Span<byte> header = stackalloc byte[HeaderSize];
        header.Clear();
        header[10] = 1; // num_buffers
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
            int n;
            try
            {
                n = _tap!.Receive(scratch, 100);
            }
            catch (IOException)
            {
                return;
            }

            if (n > 0)
            {
                Inject(scratch.AsSpan(0, n));
            }
        }
    }
}
