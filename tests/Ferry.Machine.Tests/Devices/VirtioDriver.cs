using System.Buffers.Binary;
using Ferry.Machine.Board;
using Ferry.Machine.Devices.Virtio;
using Ferry.Machine.Memory;

namespace Ferry.Machine.Tests.Devices;

/// <summary>
/// A fake virtio driver in C#: drives a transport's registers as Linux's virtio_mmio does and
/// writes split rings and requests into guest RAM (queue at 0x8010_0000, buffers above).
/// </summary>
internal sealed class VirtioDriver
{
    public const ulong Desc = 0x8010_0000, Avail = 0x8010_1000, Used = 0x8010_2000, Buffers = 0x8020_0000;

    private readonly GuestMemory _memory;
    private ushort _availIdx;
    private ushort _nextDesc;

    public VirtioDriver(VirtMachine machine, int slot)
        : this(machine.Memory, machine.Virtio[slot])
    {
    }

    public VirtioDriver(GuestMemory memory, VirtioMmio transport)
    {
        _memory = memory;
        Transport = transport;
    }

    public VirtioMmio Transport { get; }

    public ushort Size { get; private set; }

    public uint Reg(ulong offset)
    {
        Assert.True(Transport.Read(offset, 4, out ulong v));
        return (uint)v;
    }

    public void SetReg(ulong offset, uint value) => Assert.True(Transport.Write(offset, 4, value));

    /// <summary>Reset, ACKNOWLEDGE|DRIVER, the features given, FEATURES_OK; true if the device kept FEATURES_OK.</summary>
    public bool Negotiate(ulong features)
    {
        SetReg(0x70, 0);
        SetReg(0x70, VirtioMmio.StatusAcknowledge | VirtioMmio.StatusDriver);
        SetReg(0x24, 0);
        SetReg(0x20, (uint)features);
        SetReg(0x24, 1);
        SetReg(0x20, (uint)(features >> 32));
        SetReg(0x70, VirtioMmio.StatusAcknowledge | VirtioMmio.StatusDriver | VirtioMmio.StatusFeaturesOk);
        return (Reg(0x70) & VirtioMmio.StatusFeaturesOk) != 0;
    }

    public ulong DeviceFeatures()
    {
        SetReg(0x14, 0);
        ulong low = Reg(0x10);
        SetReg(0x14, 1);
        return low | ((ulong)Reg(0x10) << 32);
    }

    /// <summary>Sets up queue <paramref name="queue"/> of <paramref name="size"/> entries and DRIVER_OK.</summary>
    public void SetUpQueue(int queue, ushort size, ulong desc = Desc, ulong avail = Avail, ulong used = Used)
    {
        Size = size;
        SetReg(0x30, (uint)queue);
        SetReg(0x38, size);
        SetReg(0x80, (uint)desc);
        SetReg(0x84, (uint)(desc >> 32));
        SetReg(0x90, (uint)avail);
        SetReg(0x94, (uint)(avail >> 32));
        SetReg(0xa0, (uint)used);
        SetReg(0xa4, (uint)(used >> 32));
        SetReg(0x44, 1);
        SetReg(0x70, Reg(0x70) | VirtioMmio.StatusDriverOk);
    }

    /// <summary>After a restore: the driver knows its queue's size and where its avail index stands (the device has its own state).</summary>
    public void SetUpQueueState(ushort size, ushort availIdx)
    {
        Size = size;
        _availIdx = availIdx;
        _nextDesc = 0;
    }

    /// <summary>As <see cref="AddChain"/>, with the chain's descriptors from <paramref name="first"/>.</summary>
    public ushort AddChainAt(ushort first, params (ulong Addr, uint Len, bool Writes)[] buffers)
    {
        _nextDesc = first;
        return AddChain(buffers);
    }

    public void Ready() => Assert.True(Negotiate(VirtioDevice.FeatureVersion1), "FEATURES_OK refused");

    /// <summary>Writes descriptor <paramref name="index"/> in table <paramref name="table"/>.</summary>
    public void WriteDesc(ulong table, ushort index, ulong addr, uint len, ushort flags, ushort next)
    {
        Span<byte> d = stackalloc byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(d, addr);
        BinaryPrimitives.WriteUInt32LittleEndian(d[8..], len);
        BinaryPrimitives.WriteUInt16LittleEndian(d[12..], flags);
        BinaryPrimitives.WriteUInt16LittleEndian(d[14..], next);
        _memory.WritePhysical(table + (16UL * index), d);
    }

    /// <summary>Puts a chain of (addr, len, device-writes) buffers in the queue as the next available head; returns the head.</summary>
    public ushort AddChain(params (ulong Addr, uint Len, bool Writes)[] buffers)
    {
        ushort head = _nextDesc;
        for (int i = 0; i < buffers.Length; i++)
        {
            ushort index = (ushort)((head + i) % Size);
            bool last = i == buffers.Length - 1;
            ushort flags = (ushort)((buffers[i].Writes ? SplitQueue.DescWrite : 0) | (last ? 0 : SplitQueue.DescNext));
            WriteDesc(Desc, index, buffers[i].Addr, buffers[i].Len, flags, (ushort)((index + 1) % Size));
        }

        _nextDesc = (ushort)((head + buffers.Length) % Size);
        MakeAvailable(head);
        return head;
    }

    /// <summary>Publishes <paramref name="head"/> in the avail ring (without a notify).</summary>
    public void MakeAvailable(ushort head)
    {
        Span<byte> b = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(b, head);
        _memory.WritePhysical(Avail + 4 + (2UL * (ulong)(_availIdx % Size)), b);
        _availIdx++;
        SetAvailIndex(_availIdx);
    }

    public void SetAvailIndex(ushort idx)
    {
        Span<byte> b = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(b, idx);
        _memory.WritePhysical(Avail + 2, b);
    }

    public void Notify(int queue) => SetReg(0x50, (uint)queue);

    public ushort UsedIdx => U16(Used + 2);

    /// <summary>The used element at position <paramref name="i"/>: (id, len).</summary>
    public (uint Id, uint Len) UsedElem(int i) => (U32(Used + 4 + (8UL * (ulong)(i % Size))), U32(Used + 8 + (8UL * (ulong)(i % Size))));

    public byte[] ReadRam(ulong address, int length)
    {
        var b = new byte[length];
        _memory.ReadPhysical(address, b);
        return b;
    }

    /// <summary>A virtio-blk request header at <paramref name="at"/>.</summary>
    public void BlkHeader(ulong at, uint type, ulong sector)
    {
        var h = new byte[16];
        BinaryPrimitives.WriteUInt32LittleEndian(h, type);
        BinaryPrimitives.WriteUInt64LittleEndian(h.AsSpan(8), sector);
        _memory.WritePhysical(at, h);
    }

    private ushort U16(ulong a) => BinaryPrimitives.ReadUInt16LittleEndian(ReadRam(a, 2));

    private uint U32(ulong a) => BinaryPrimitives.ReadUInt32LittleEndian(ReadRam(a, 4));
}
