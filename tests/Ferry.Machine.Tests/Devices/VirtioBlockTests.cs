using System.Buffers.Binary;
using Ferry.Machine.Board;
using Ferry.Machine.Devices.Virtio;
using Ferry.Machine.Memory;
using Ferry.Machine.State;

namespace Ferry.Machine.Tests.Devices;

/// <summary>
/// The virtio-mmio transport and virtio-blk, driven from C# by a fake driver that writes split
/// rings into guest RAM: probing, feature negotiation, requests, interrupts, page facts, hostile
/// drivers (the device needs a reset, the host carries on), state round trips, and DMA into an
/// absent page on a migration's destination.
/// </summary>
public sealed class VirtioBlockTests : IDisposable
{
    private const int Slot = 7; // QEMU fills virtio-mmio slots from the highest down
    private const ulong Header = VirtioDriver.Buffers, Data = VirtioDriver.Buffers + 0x1000, Status = VirtioDriver.Buffers + 0x10_0000;

    private readonly string _disk = Path.Combine(Path.GetTempPath(), $"ferry-blk-{Guid.NewGuid():n}.img");
    private readonly byte[] _content = new byte[1 << 20];
    private readonly List<string> _log = [];

    public VirtioBlockTests()
    {
        new Random(12).NextBytes(_content);
        File.WriteAllBytes(_disk, _content);
    }

    public void Dispose() => File.Delete(_disk);

    private VirtMachine NewMachine()
    {
        var m = new VirtMachine(new MachineConfig { MemorySize = 64UL << 20 }, devices: new MachineDevices { Disk = _disk });
        m.DeviceLog = _log.Add;
        return m;
    }

    private static VirtioDriver ReadyDriver(VirtMachine m, ushort size = 16)
    {
        var d = new VirtioDriver(m, Slot);
        d.Ready();
        d.SetUpQueue(0, size);
        return d;
    }

    [Fact]
    public void The_disk_takes_the_highest_slot_and_empty_slots_probe_as_no_device()
    {
        using VirtMachine m = NewMachine();
        var blk = new VirtioDriver(m, Slot);
        Assert.Equal([0x74726976u, 2u, 2u, 0x554D4551u], new[] { blk.Reg(0), blk.Reg(4), blk.Reg(8), blk.Reg(0xc) });
        Assert.Equal(0x1000_8000UL, blk.Transport.BaseAddress);
        Assert.Equal(8, blk.Transport.Irq);
        var empty = new VirtioDriver(m, 0);
        Assert.Equal([0x74726976u, 2u, 0u], new[] { empty.Reg(0), empty.Reg(4), empty.Reg(8) });
        Assert.Equal((ulong)(_content.Length / 512), BinaryPrimitives.ReadUInt64LittleEndian(BitConverter.GetBytes(Config64(blk, 0))));
        Assert.Equal(512u, blk.Reg(0x100 + 20));
        Assert.Equal([7], m.VirtioDevices.Select(t => t.Slot));
    }

    private static ulong Config64(VirtioDriver d, int offset)
    {
        Assert.True(d.Transport.Read(0x100 + (ulong)offset, 8, out ulong v));
        return v;
    }

    [Fact]
    public void A_disk_that_cannot_be_opened_fails_the_machine_with_a_one_line_reason()
    {
        string missing = _disk + ".missing";
        var e = Assert.Throws<IOException>(() => new VirtMachine(new MachineConfig { MemorySize = 16UL << 20 }, devices: new MachineDevices { Disk = missing }));
        Assert.StartsWith($"disk {missing}: ", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Theory]
    [InlineData("tap", null, "ferry0", null)]
    [InlineData("tap,ifname=vm7,bridge=br1,mac=52:54:00:ab:cd:ef", "vm7", "br1", "52:54:00:ab:cd:ef")]
    [InlineData("tap,bridge=", null, "", null)]
    public void Net_options_parse_and_print_back(string text, string? ifname, string bridge, string? mac)
    {
        NetBackendOptions o = NetBackendOptions.Parse(text);
        Assert.Equal(ifname, o.Ifname);
        Assert.Equal(bridge, o.Bridge);
        Assert.Equal(mac, o.Mac is null ? null : NetBackendOptions.FormatMac(o.Mac));
        Assert.Equal(o with { }, NetBackendOptions.Parse(o.ToString()) with { Mac = o.Mac });
        Assert.Equal(o.MacFor("vm-a"), o.MacFor("vm-a"));
    }

    [Theory]
    [InlineData("vde")]
    [InlineData("tap,mac=01:00:5e:00:00:01")]
    [InlineData("tap,mac=52:54:00:12:34")]
    [InlineData("tap,ifname=a/b")]
    [InlineData("tap,colour=blue")]
    public void Bad_net_options_are_refused(string text) => Assert.Throws<FormatException>(() => NetBackendOptions.Parse(text));

    [Fact]
    public void The_derived_mac_is_a_local_unicast_address_that_depends_on_the_name()
    {
        var o = new NetBackendOptions();
        byte[] a = o.MacFor("vm-a"), b = o.MacFor("vm-b");
        Assert.Equal([0x52, 0x54, 0x00], a[..3]);
        Assert.NotEqual(a, b);
    }

    [Fact]
    public void Features_ok_needs_version_1_and_only_offered_features()
    {
        using VirtMachine m = NewMachine();
        var d = new VirtioDriver(m, Slot);
        ulong offered = d.DeviceFeatures();
        Assert.NotEqual(0UL, offered & VirtioDevice.FeatureVersion1);
        Assert.NotEqual(0UL, offered & VirtioBlock.FeatureFlush);
        Assert.False(d.Negotiate(0), "a legacy driver (no VERSION_1) was accepted");
        Assert.False(d.Negotiate(VirtioDevice.FeatureVersion1 | (1UL << 40)), "an unoffered feature was accepted");
        Assert.True(d.Negotiate(VirtioDevice.FeatureVersion1 | VirtioBlock.FeatureFlush));
        Assert.True(d.Transport.Negotiated(VirtioBlock.FeatureFlush));
    }

    [Fact]
    public void A_read_lands_in_ram_marks_its_pages_and_raises_the_interrupt()
    {
        using VirtMachine m = NewMachine();
        VirtioDriver d = ReadyDriver(m);
        m.Memory.Dirty.ClearAll();
        d.BlkHeader(Header, VirtioBlock.TypeIn, 3);
        d.AddChain((Header, 16, false), (Data, 8192, true), (Status, 1, true));
        Assert.False(m.Plic.IsPending(8));
        d.Notify(0);

        Assert.Equal(1, d.UsedIdx);
        Assert.Equal((0u, 8193u), d.UsedElem(0));
        Assert.Equal(_content.AsSpan(3 * 512, 8192).ToArray(), d.ReadRam(Data, 8192));
        Assert.Equal(VirtioBlock.StatusOk, d.ReadRam(Status, 1)[0]);
        Assert.Equal(1u, d.Reg(0x60));
        Assert.True(m.Plic.IsPending(8), "PLIC source 8 not pending");
        int page = m.Memory.PageOf(Data);
        Assert.True(m.Memory.Dirty.Get(page) && m.Memory.Dirty.Get(page + 1) && m.Memory.Populated.Get(page) && m.Memory.Accessed.Get(page));
        Assert.False(m.Memory.Dirty.Get(page + 2));

        d.SetReg(0x64, 1); // ack
        Assert.Equal(0u, d.Reg(0x60));
    }

    [Fact]
    public void Writes_reach_the_file_flush_and_get_id_complete_and_bad_requests_fail_with_a_status()
    {
        using VirtMachine m = NewMachine();
        VirtioDriver d = ReadyDriver(m);
        byte[] data = [.. Enumerable.Range(0, 1024).Select(i => (byte)(i * 7))];
        m.Memory.WritePhysical(Data, data);
        d.BlkHeader(Header, VirtioBlock.TypeOut, 10);
        d.AddChain((Header, 16, false), (Data, 1024, false), (Status, 1, true));
        d.Notify(0);
        Assert.Equal(VirtioBlock.StatusOk, d.ReadRam(Status, 1)[0]);

        d.BlkHeader(Header + 0x100, VirtioBlock.TypeFlush, 0);
        d.AddChain((Header + 0x100, 16, false), (Status + 1, 1, true));
        d.BlkHeader(Header + 0x200, VirtioBlock.TypeGetId, 0);
        d.AddChain((Header + 0x200, 16, false), (Data + 0x2000, 20, true), (Status + 2, 1, true));
        d.BlkHeader(Header + 0x300, VirtioBlock.TypeIn, (ulong)(_content.Length / 512) - 1); // runs past the end
        d.AddChain((Header + 0x300, 16, false), (Data + 0x3000, 1024, true), (Status + 3, 1, true));
        d.BlkHeader(Header + 0x400, 99, 0);
        d.AddChain((Header + 0x400, 16, false), (Status + 4, 1, true));
        d.Notify(0);

        Assert.Equal(5, d.UsedIdx);
        Assert.Equal(new byte[] { VirtioBlock.StatusOk, VirtioBlock.StatusOk, VirtioBlock.StatusIoError, VirtioBlock.StatusUnsupported }, d.ReadRam(Status + 1, 4));
        Assert.StartsWith("ferry-", System.Text.Encoding.ASCII.GetString(d.ReadRam(Data + 0x2000, 20)));
        byte[] file = File.ReadAllBytes(_disk);
        Assert.Equal(data, file.AsSpan(10 * 512, 1024).ToArray());
        Assert.Equal(_content.AsSpan(0, 10 * 512).ToArray(), file.AsSpan(0, 10 * 512).ToArray());
    }

    [Fact]
    public void Indirect_descriptors_are_followed()
    {
        using VirtMachine m = NewMachine();
        VirtioDriver d = ReadyDriver(m);
        const ulong table = VirtioDriver.Buffers + 0x8000;
        d.BlkHeader(Header, VirtioBlock.TypeIn, 0);
        d.WriteDesc(table, 0, Header, 16, SplitQueue.DescNext, 1);
        d.WriteDesc(table, 1, Data, 512, SplitQueue.DescNext | SplitQueue.DescWrite, 2);
        d.WriteDesc(table, 2, Data + 0x1000, 512, SplitQueue.DescNext | SplitQueue.DescWrite, 3);
        d.WriteDesc(table, 3, Status, 1, SplitQueue.DescWrite, 0);
        d.WriteDesc(VirtioDriver.Desc, 0, table, 64, SplitQueue.DescIndirect, 0);
        d.MakeAvailable(0);
        d.Notify(0);
        Assert.Equal(1, d.UsedIdx);
        Assert.Equal(_content.AsSpan(0, 512).ToArray(), d.ReadRam(Data, 512));
        Assert.Equal(_content.AsSpan(512, 512).ToArray(), d.ReadRam(Data + 0x1000, 512));
        Assert.Equal(VirtioBlock.StatusOk, d.ReadRam(Status, 1)[0]);
    }

    public static TheoryData<string> HostileDrivers => ["outside RAM", "loop", "oversized length", "indirect loop", "avail index runs ahead", "head outside the queue"];

    [Theory]
    [MemberData(nameof(HostileDrivers))]
    public void A_hostile_driver_gets_device_needs_reset_and_a_log_line_and_the_device_works_after_a_reset(string hostile)
    {
        using VirtMachine m = NewMachine();
        VirtioDriver d = ReadyDriver(m);
        d.BlkHeader(Header, VirtioBlock.TypeIn, 0);
        switch (hostile)
        {
            case "outside RAM":
                d.AddChain((Header, 16, false), (0x1_0000_0000, 4096, true), (Status, 1, true));
                break;
            case "loop":
                d.WriteDesc(VirtioDriver.Desc, 0, Header, 16, SplitQueue.DescNext, 1);
                d.WriteDesc(VirtioDriver.Desc, 1, Data, 512, SplitQueue.DescNext | SplitQueue.DescWrite, 0);
                d.MakeAvailable(0);
                break;
            case "oversized length":
                d.AddChain((Header, 16, false), (Data, 0xFFFF_FFF0, true), (Status, 1, true));
                break;
            case "indirect loop":
                const ulong table = VirtioDriver.Buffers + 0x8000;
                d.WriteDesc(table, 0, Header, 16, SplitQueue.DescNext, 1);
                d.WriteDesc(table, 1, Data, 512, SplitQueue.DescNext | SplitQueue.DescWrite, 0);
                d.WriteDesc(VirtioDriver.Desc, 0, table, 32, SplitQueue.DescIndirect, 0);
                d.MakeAvailable(0);
                break;
            case "avail index runs ahead":
                d.SetAvailIndex(1000);
                break;
            case "head outside the queue":
                d.MakeAvailable(40);
                break;
        }

        d.Notify(0);
        Assert.NotEqual(0u, d.Reg(0x70) & VirtioMmio.StatusNeedsReset);
        Assert.Equal(0, d.UsedIdx);
        Assert.Equal(2u, d.Reg(0x60)); // configuration change
        Assert.Single(_log);
        Assert.Contains("needs a reset", _log[0]);
        Assert.NotNull(d.Transport.LastError);

        // A reset brings it back.
        var again = ReadyDriver(m);
        Assert.Equal(0u, again.Reg(0x70) & VirtioMmio.StatusNeedsReset);
        again.SetAvailIndex(0);
        again.BlkHeader(Header, VirtioBlock.TypeIn, 0);
        again.AddChain((Header, 16, false), (Data, 512, true), (Status, 1, true));
        again.Notify(0);
        Assert.Equal(1, again.UsedIdx);
        Assert.Equal(VirtioBlock.StatusOk, again.ReadRam(Status, 1)[0]);
    }

    [Theory]
    [InlineData((ushort)12)]
    [InlineData((ushort)512)]
    [InlineData((ushort)0)]
    public void A_queue_size_that_is_not_a_power_of_two_up_to_the_maximum_is_refused(ushort size)
    {
        using VirtMachine m = NewMachine();
        var d = new VirtioDriver(m, Slot);
        d.Ready();
        d.SetUpQueue(0, size);
        Assert.Equal(0u, d.Reg(0x44));
        Assert.NotEqual(0u, d.Reg(0x70) & VirtioMmio.StatusNeedsReset);
        Assert.Contains("power of two", d.Transport.LastError);
    }

    [Fact]
    public void Rings_outside_ram_are_refused_when_the_queue_is_made_ready()
    {
        using VirtMachine m = NewMachine();
        var d = new VirtioDriver(m, Slot);
        d.Ready();
        d.SetUpQueue(0, 16, desc: 0x8000_0000UL + (64UL << 20) - 0x80);
        Assert.Equal(0u, d.Reg(0x44));
        Assert.Contains("outside RAM", d.Transport.LastError);
    }

    [Fact]
    public void Device_state_round_trips_through_the_state_codec_and_the_device_carries_on()
    {
        byte[] encoded;
        byte[] ram = new byte[64 << 20];
        string digest;
        using (VirtMachine m = NewMachine())
        {
            VirtioDriver d = ReadyDriver(m);
            d.BlkHeader(Header, VirtioBlock.TypeIn, 1);
            d.AddChain((Header, 16, false), (Data, 512, true), (Status, 1, true));
            d.Notify(0);
            Assert.Equal(1, d.UsedIdx);
            encoded = StateCodec.Encode(m.SaveState());
            m.Memory.ReadPhysical(m.Memory.BaseAddress, ram);
            digest = StateDigest.Compute(m);
        }

        MachineState decoded = StateCodec.Decode(encoded);
        VirtioSlotState slot = Assert.Single(decoded.Device<VirtioState>().Slots);
        Assert.Equal((byte)Slot, slot.Slot);
        Assert.Equal((ushort)1, slot.Queues[0].LastAvail);
        Assert.Equal(1u, slot.InterruptStatus);

        using VirtMachine restored = NewMachine();
        restored.Memory.WritePhysical(restored.Memory.BaseAddress, ram);
        restored.RestoreState(decoded);
        Assert.Equal(digest, StateDigest.Compute(restored));
        Assert.Equal(Virt(encoded), Virt(StateCodec.Encode(restored.SaveState())));

        // The restored device serves the next request from where the saved one stopped.
        var d2 = new VirtioDriver(restored, Slot);
        d2.SetUpQueueState(16, availIdx: 1);
        d2.BlkHeader(Header, VirtioBlock.TypeIn, 2);
        d2.AddChainAt(1, (Header, 16, false), (Data, 512, true), (Status, 1, true));
        d2.Notify(0);
        Assert.Equal(2, d2.UsedIdx);
        Assert.Equal((1u, 513u), d2.UsedElem(1));
        Assert.Equal(_content.AsSpan(1024, 512).ToArray(), d2.ReadRam(Data, 512));
    }

    [Fact]
    public void Device_state_round_trips_through_a_snapshot_given_the_same_disk()
    {
        using VirtMachine m = NewMachine();
        VirtioDriver d = ReadyDriver(m);
        d.BlkHeader(Header, VirtioBlock.TypeIn, 1);
        d.AddChain((Header, 16, false), (Data, 512, true), (Status, 1, true));
        d.Notify(0);
        using var file = new MemoryStream();
        Snapshot.Save(m, file);

        using VirtMachine resumed = Snapshot.Load(file.ToArray(), devices: new MachineDevices { Disk = _disk });
        Assert.Equal(StateDigest.Compute(m), StateDigest.Compute(resumed));
        Assert.Equal((ushort)1, resumed.Virtio[Slot].Queues[0].UsedIndex);
        Assert.Contains("slot 7", Assert.Throws<SnapshotException>(() => Snapshot.Load(file.ToArray())).Message);
    }

    private static byte[] Virt(byte[] encoded) => State.StateSamples.Sections(encoded).Single(s => s.Tag == "VIRT").Payload;

    [Fact]
    public void Restoring_disk_state_into_a_machine_without_the_disk_is_refused_with_a_reason()
    {
        MachineState state;
        using (VirtMachine m = NewMachine())
        {
            state = m.SaveState();
        }

        using var bare = new VirtMachine(new MachineConfig { MemorySize = 64UL << 20 });
        var e = Assert.Throws<InvalidDataException>(() => bare.RestoreState(state));
        Assert.Contains("slot 7", e.Message);
        using VirtMachine withDisk = NewMachine();
        var e2 = Assert.Throws<InvalidDataException>(() => withDisk.RestoreState(bare.SaveState()));
        Assert.Contains("virtio-blk", e2.Message);
    }

    [Fact]
    public void A_device_write_to_an_absent_page_on_a_destination_faults_it_in_like_the_hart()
    {
        // As on a post-copy destination: the data page has not arrived; the pager installs it when asked.
        byte[] arriving = new byte[4096];
        arriving[0] = 0xEE;
        (VirtMachine m, VirtioDriver d, int page, InstallingPager pager) = ReadWithAbsentDataPage(arriving);
        using VirtMachine machine = m;
        m.Memory.Dirty.ClearAll();

        d.Notify(0);

        Assert.Equal([page], pager.Needed);
        Assert.False(m.Memory.Absent.Get(page));
        Assert.Equal(1, d.UsedIdx);
        Assert.Equal(_content.AsSpan(4 * 512, 4096).ToArray(), d.ReadRam(Data, 4096)); // the device's data, over the page that arrived
        Assert.True(m.Memory.Dirty.Get(page) && m.Memory.Populated.Get(page));
    }

    [Fact]
    public void A_cancelled_wait_for_an_absent_page_leaves_the_request_and_the_next_run_boundary_serves_it()
    {
        (VirtMachine m, VirtioDriver d, int page, _) = ReadWithAbsentDataPage(null); // the pager never delivers
        using VirtMachine machine = m;
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        m.Hart.StallCancellation = cancelled.Token;

        d.Notify(0);
        Assert.Equal(0, d.UsedIdx);
        Assert.True(d.Transport.Queues[0].KickPending);
        Assert.Null(d.Transport.LastError);

        m.Memory.InstallPage(page, new byte[4096]);
        m.Hart.StallCancellation = CancellationToken.None;
        d.Transport.Poll();
        Assert.Equal(1, d.UsedIdx);
        Assert.False(d.Transport.Queues[0].KickPending);
        Assert.Equal(_content.AsSpan(4 * 512, 4096).ToArray(), d.ReadRam(Data, 4096));
    }

    /// <summary>A machine with a read of sector 4 available in its queue whose data page is absent, served by a pager delivering <paramref name="arriving"/> (null: never).</summary>
    private (VirtMachine, VirtioDriver, int Page, InstallingPager) ReadWithAbsentDataPage(byte[]? arriving)
    {
        VirtMachine m = NewMachine();
        VirtioDriver d = ReadyDriver(m);
        d.BlkHeader(Header, VirtioBlock.TypeIn, 4);
        d.AddChain((Header, 16, false), (Data, 4096, true), (Status, 1, true));
        int page = m.Memory.PageOf(Data);
        var absent = new PageBitmap(m.Memory.PageCount);
        absent.Set(page);
        m.Memory.MarkAbsent(absent);
        var pager = new InstallingPager(m.Memory, arriving);
        m.Memory.AbsentPageHandler = pager;
        return (m, d, page, pager);
    }

    /// <summary>A remote pager stand-in: installs the page from another thread when the device asks for it.</summary>
    private sealed class InstallingPager(GuestMemory memory, byte[]? content) : IAbsentPageHandler
    {
        public List<int> Needed { get; } = [];

        public void PageNeeded(int page, long blockedAt)
        {
            Needed.Add(page);
            if (content is not null)
            {
                _ = Task.Run(async () =>
                {
                    await Task.Delay(20);
                    memory.InstallPage(page, content);
                });
            }
        }

        public void PageInstalled(int page, long at)
        {
        }

        public void StallEnded(int page, long blockedAt, long resumedAt)
        {
        }
    }
}
