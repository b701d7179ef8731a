using System.Buffers.Binary;
using Ferry.Machine.Devices;
using Ferry.Machine.Devices.Virtio;
using Ferry.Machine.Memory;

namespace Ferry.Machine.Tests.Devices;

/// <summary>
/// virtio-net without a TAP (frames injected as the reader thread does): features and
/// configuration, receive into the driver's buffers (at a notify or at a run boundary),
/// GUEST_ANNOUNCE and its acknowledgement on the control queue, hostile buffers, state.
/// </summary>
public sealed class VirtioNetTests : IDisposable
{
    private static readonly byte[] Mac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    private const ulong Rx = VirtioDriver.Buffers, Ctrl = VirtioDriver.Buffers + 0x10_0000;

    private readonly GuestMemory _memory = new(64UL << 20);
    private readonly Pins _plic = new();
    private readonly VirtioNet _net;
    private readonly VirtioMmio _transport;
    private readonly List<string> _log = [];
    private int _wakes;

    public VirtioNetTests()
    {
        _net = new VirtioNet(Mac, () => _wakes++, tap: null);
        _transport = new VirtioMmio(6, _net, new InterruptLine(_plic, 7), new GuestDma(_memory, () => CancellationToken.None), _log.Add);
    }

    public void Dispose()
    {
        _net.Dispose();
        _memory.Dispose();
    }

    private VirtioDriver Up(ulong features = VirtioDevice.FeatureVersion1 | VirtioNet.FeatureMac | VirtioNet.FeatureStatus | VirtioNet.FeatureCtrlVq | VirtioNet.FeatureGuestAnnounce)
    {
        var d = new VirtioDriver(_memory, _transport);
        Assert.True(d.Negotiate(features));
        d.SetUpQueue(0, 16);
        return d;
    }

    private static byte[] Frame(int length, byte fill)
    {
        var f = new byte[length];
        Array.Fill(f, fill);
        return f;
    }

    [Fact]
    public void The_card_offers_mac_status_control_queue_and_guest_announce_and_shows_its_mac_and_link()
    {
        var d = new VirtioDriver(_memory, _transport);
        Assert.Equal(1u, d.Reg(8));
        ulong f = d.DeviceFeatures();
        foreach (ulong bit in new[] { VirtioDevice.FeatureVersion1, VirtioNet.FeatureMac, VirtioNet.FeatureStatus, VirtioNet.FeatureCtrlVq, VirtioNet.FeatureGuestAnnounce })
        {
            Assert.NotEqual(0UL, f & bit);
        }

        Assert.True(_transport.Read(0x100, 4, out ulong low));
        Assert.True(_transport.Read(0x104, 2, out ulong high));
        Assert.Equal(Mac, BitConverter.GetBytes(low | (high << 32))[..6]);
        Assert.True(_transport.Read(0x106, 2, out ulong status));
        Assert.Equal((ulong)VirtioNet.StatusLinkUp, status);
    }

    [Fact]
    public void A_frame_waits_for_a_receive_buffer_then_arrives_with_its_header_and_an_interrupt()
    {
        VirtioDriver d = Up();
        Assert.True(_net.Inject(Frame(60, 0xAB)));
        Assert.True(_wakes > 0, "the machine was not woken");
        Assert.True(_transport.PollNeeded);
        _transport.Poll(); // no buffer yet
        Assert.Equal(0, d.UsedIdx);
        Assert.False(_transport.PollNeeded, "a card without buffers keeps asking to be polled");

        d.AddChain((Rx, 1526, true));
        d.Notify(0);
        Assert.Equal(1, d.UsedIdx);
        Assert.Equal((0u, 72u), d.UsedElem(0));
        byte[] got = d.ReadRam(Rx, 72);
        Assert.Equal(1, BinaryPrimitives.ReadUInt16LittleEndian(got.AsSpan(10))); // num_buffers
        Assert.Equal(Frame(60, 0xAB), got[12..]);
        Assert.True(_plic.Level[7]);
        Assert.Equal(1, _net.FramesReceived);

        // With buffers ready, a frame goes in at the next run boundary.
        d.AddChain((Rx + 0x1000, 1526, true));
        Assert.True(_net.Inject(Frame(100, 0xCD)));
        Assert.True(_transport.PollNeeded);
        _transport.Poll();
        Assert.Equal(2, d.UsedIdx);
        Assert.Equal(Frame(100, 0xCD), d.ReadRam(Rx + 0x1000 + 12, 100));
    }

    [Fact]
    public void The_ring_is_bounded_and_drops_what_does_not_fit()
    {
        for (int i = 0; i < VirtioNet.RingFrames; i++)
        {
            Assert.True(_net.Inject(Frame(64, (byte)i)));
        }

        Assert.False(_net.Inject(Frame(64, 0)));
        Assert.False(_net.Inject(Frame(VirtioNet.MaxFrame + 1, 0)));
        Assert.Equal(2, _net.FramesDropped);
    }

    [Fact]
    public void Announce_raises_the_status_bit_and_a_config_interrupt_and_the_control_queue_ack_clears_it()
    {
        VirtioDriver d = Up();
        d.SetReg(0x30, 2);
        d.SetUpQueue(2, 16, desc: VirtioDriver.Desc + 0x10000, avail: VirtioDriver.Avail + 0x10000, used: VirtioDriver.Used + 0x10000);
        _net.Announce();
        Assert.Equal(VirtioNet.StatusLinkUp | VirtioNet.StatusAnnounce, _net.LinkStatus);
        Assert.Equal(VirtioMmio.InterruptConfigChange, d.Reg(0x60));

        // VIRTIO_NET_CTRL_ANNOUNCE_ACK: class 3, command 0, then the device's ack byte.
        var ctrl = new VirtioDriver(_memory, _transport);
        _memory.WritePhysical(Ctrl, [VirtioNet.CtrlAnnounce, VirtioNet.CtrlAnnounceAck]);
        _memory.WritePhysical(Ctrl + 16, [0xFF]);
        ctrl.SetUpQueueState(16, 0);
        ctrl.WriteDesc(VirtioDriver.Desc + 0x10000, 0, Ctrl, 2, SplitQueue.DescNext, 1);
        ctrl.WriteDesc(VirtioDriver.Desc + 0x10000, 1, Ctrl + 16, 1, SplitQueue.DescWrite, 0);
        _memory.WritePhysical(VirtioDriver.Avail + 0x10000 + 4, [0, 0]);
        _memory.WritePhysical(VirtioDriver.Avail + 0x10000 + 2, [1, 0]);
        ctrl.Notify(2);
        Assert.Equal(VirtioNet.CtrlOk, ctrl.ReadRam(Ctrl + 16, 1)[0]);
        Assert.Equal(VirtioNet.StatusLinkUp, _net.LinkStatus);
        Assert.Equal(1, _net.AnnouncementsAcknowledged);
    }

    [Fact]
    public void Announce_does_nothing_for_a_driver_without_guest_announce()
    {
        Up(VirtioDevice.FeatureVersion1 | VirtioNet.FeatureMac);
        _net.Announce();
        Assert.Equal(VirtioNet.StatusLinkUp, _net.LinkStatus);
        Assert.Equal(0u, _transport.InterruptStatus);
    }

    [Fact]
    public void A_receive_buffer_too_small_for_the_frame_needs_a_reset()
    {
        VirtioDriver d = Up();
        d.AddChain((Rx, 20, true));
        _net.Inject(Frame(60, 1));
        _transport.Poll();
        Assert.NotEqual(0u, _transport.Status & VirtioMmio.StatusNeedsReset);
        Assert.Contains("too small", Assert.Single(_log));
    }

    [Fact]
    public void Mac_status_and_waiting_frames_cross_in_the_state_and_the_carried_frames_reach_the_guest_first()
    {
        VirtioDriver d = Up();
        d.AddChain((Rx, 1526, true));
        d.AddChain((Rx + 0x1000, 1526, true));
        _net.Announce();
        _net.Inject(Frame(60, 1));
        _net.Inject(Frame(70, 3));
        VirtioSlotState saved = _transport.SaveState(); // (the source's card never polled: both frames wait)

        using var other = new VirtioNet([0x52, 0x54, 0, 0, 0, 1], () => { }, tap: null);
        using var memory = new GuestMemory(64UL << 20);
        var t = new VirtioMmio(6, other, new InterruptLine(new Pins(), 7), new GuestDma(memory, () => CancellationToken.None), _ => { });
        other.Inject(Frame(60, 2)); // came before the VM did: not its own
        t.RestoreState(saved);
        Assert.Equal(Mac, other.Mac.ToArray());
        Assert.Equal(VirtioNet.StatusLinkUp | VirtioNet.StatusAnnounce, other.LinkStatus);
        Assert.Equal(d.Reg(0x70), t.Status);

        // The driver's rings and buffers are in the VM's RAM, which moves with it.
        for (int p = 0; p < _memory.PageCount; p++)
        {
            if (_memory.Populated.Get(p))
            {
                memory.LoadPage(p, _memory.Page(p));
            }
        }

        Assert.True(other.HasExternalWork, "the carried frames are not waiting");
        t.Poll();
        ulong used = VirtioDriver.Used - memory.BaseAddress;
        ReadOnlySpan<byte> ring = memory.Page((int)(used / GuestMemory.PageSize))[(int)(used % GuestMemory.PageSize)..];
        Assert.Equal(2, BinaryPrimitives.ReadUInt16LittleEndian(ring[2..]));
        Assert.Equal(VirtioNet.HeaderSize + 60, (int)BinaryPrimitives.ReadUInt32LittleEndian(ring[8..]));
        Assert.Equal(VirtioNet.HeaderSize + 70, (int)BinaryPrimitives.ReadUInt32LittleEndian(ring[16..]));
        Assert.False(other.HasExternalWork, "the frame from before the restore is waiting too");
    }

    [Fact]
    public void A_state_with_malformed_waiting_frames_is_refused()
    {
        byte[] state = _net.SaveDeviceState();
        Assert.Equal(10, state.Length);
        byte[] bad = [.. state[..8], 1, 0, 60, 0, 1, 2]; // one 60-byte frame, 2 bytes of it
        Assert.Throws<InvalidDataException>(() => _net.RestoreDeviceState(bad));
        byte[] tiny = [.. state[..8], 1, 0, 4, 0, 1, 2, 3, 4]; // shorter than an Ethernet header
        Assert.Throws<InvalidDataException>(() => _net.RestoreDeviceState(tiny));
        byte[] trailing = [.. state, 9];
        Assert.Throws<InvalidDataException>(() => _net.RestoreDeviceState(trailing));
    }

    [Fact]
    public void The_self_announcements_follow_qemus_default_rounds()
    {
        // QEMU 7.2's query-migrate-parameters: announce-initial 50, -step 100, -max 550, -rounds 5;
        // net/announce.c sends the first at once, then waits 50, 150, 250 and 350 ms.
        Assert.Equal(new[] { 50, 150, 250, 350 }, Enumerable.Range(1, VirtioNet.AnnounceRounds - 1).Select(VirtioNet.AnnounceDelayMs));
    }

    [Fact]
    public void The_self_announcement_is_qemus_rarp_from_the_vms_mac()
    {
        var frame = new byte[60];
        VirtioNet.WriteSelfAnnouncement(Mac, frame);
        Assert.Equal(new byte[] { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff }, frame[..6]);
        Assert.Equal(Mac, frame[6..12]);
        Assert.Equal(0x8035, BinaryPrimitives.ReadUInt16BigEndian(frame.AsSpan(12)));   // RARP
        Assert.Equal(1, BinaryPrimitives.ReadUInt16BigEndian(frame.AsSpan(14)));        // Ethernet
        Assert.Equal(0x0800, BinaryPrimitives.ReadUInt16BigEndian(frame.AsSpan(16)));   // IPv4
        Assert.Equal(new byte[] { 6, 4 }, frame[18..20]);
        Assert.Equal(3, BinaryPrimitives.ReadUInt16BigEndian(frame.AsSpan(20)));        // request reverse
        Assert.Equal(Mac, frame[22..28]);
        Assert.Equal(Mac, frame[32..38]);
        Assert.All(frame[42..], b => Assert.Equal(0, b));
    }
    [Fact]
    public void The_pages_a_device_touches_next_are_its_rings_and_the_buffers_posted_but_not_used()
    {
        VirtioDriver d = Up();
        d.AddChain((Rx, 1526, true));                       // used below: not named any more
        d.AddChain((Rx + 0x3000, 1526, true));              // posted
        d.AddChain((Rx + 0x5800, 0x1000, true));            // posted, across two pages
        Assert.True(_net.Inject(Frame(60, 1)));
        _transport.Poll();                                  // the first buffer takes the frame
        var pages = new PageBitmap(_memory.PageCount);
        _transport.Queues[0].AddDmaPages(_memory, pages);
        int Page(ulong address) => _memory.PageOf(address);
        int[] expected = [Page(VirtioDriver.Desc), Page(VirtioDriver.Avail), Page(VirtioDriver.Used), Page(Rx + 0x3000), Page(Rx + 0x5800), Page(Rx + 0x6000)];
        Assert.Equal(expected.Order(), Enumerate(pages));

        // The next chain only (the device uses them in order): the rings and its buffer.
        pages.ClearAll();
        _transport.Queues[0].AddDmaPages(_memory, pages, maxChains: 1);
        Assert.Equal(expected[..4].Order(), Enumerate(pages));

        // A hostile driver: a chain that loops, and a descriptor as long as RAM, cost a bounded walk.
        d.WriteDesc(VirtioDriver.Desc, 5, Rx, (uint)(60UL << 20), SplitQueue.DescWrite | SplitQueue.DescNext, 6);
        d.WriteDesc(VirtioDriver.Desc, 6, Rx, 16, SplitQueue.DescWrite | SplitQueue.DescNext, 5);
        d.MakeAvailable(5);
        pages.ClearAll();
        _transport.Queues[0].AddDmaPages(_memory, pages);
        Assert.InRange(pages.PopCount(), SplitQueue.MaxDmaPages - 8, SplitQueue.MaxDmaPages);
    }

    private static List<int> Enumerate(PageBitmap pages)
    {
        var list = new List<int>();
        foreach (int p in pages.EnumerateSet())
        {
            list.Add(p);
        }

        return list;
    }
}
