using Ferry.Machine.State;

namespace Ferry.Machine.Devices.Virtio;

/// <summary>One virtqueue's transport state: its layout and the device's positions in its rings.</summary>
public sealed record VirtioQueueState(ushort Size, bool Ready, ulong Desc, ulong Driver, ulong Device, ushort LastAvail, ushort UsedIndex, bool KickPending);

/// <summary>
/// One virtio-mmio slot with a device: the transport's registers, its queues, and the device's own
/// bytes (<see cref="VirtioDevice.SaveDeviceState"/>). Requests complete at the notify, so nothing
/// is in flight but a notify still to retry (<see cref="VirtioQueueState.KickPending"/>).
/// </summary>
public sealed record VirtioSlotState(
    byte Slot, uint DeviceId, uint Status, uint DeviceFeaturesSel, ulong DriverFeatures, uint DriverFeaturesSel, uint QueueSel,
    uint InterruptStatus, uint ConfigGeneration, IReadOnlyList<VirtioQueueState> Queues, byte[] DeviceState);

/// <summary>
/// The board's virtio-mmio devices (section VIRT): one entry per slot that holds a device, in slot
/// order. A machine without devices saves an empty list.
///
///   u8 count | count x { u8 slot | u32 device id | u32 status | u32 device features sel
///   | u64 driver features | u32 driver features sel | u32 queue sel | u32 interrupt status
///   | u32 config generation | u8 queues x { u16 size | u8 ready | u64 desc | u64 driver
///   | u64 device | u16 last avail | u16 used idx | u8 kick pending } | u32 n | n device bytes }
///
/// Version 2: the device bytes' length is a u32 (a network card's carry the frames waiting for the guest).
/// </summary>
public sealed record VirtioState(IReadOnlyList<VirtioSlotState> Slots)
{
    public const int MaxQueues = 8;
    /// <summary>A device's own bytes at most: a network card's carry the frames waiting for its guest.</summary>
    public const int MaxDeviceBytes = 16 + VirtioNet.MaxCarriedBytes;

    public static readonly StateSection<VirtioState> Section = new("VIRT", 2, 8192 + (VirtioMmio.SlotCount * MaxDeviceBytes), Write, Read);

    private static void Write(BinaryWriter w, VirtioState s)
    {
        w.Write((byte)s.Slots.Count);
        foreach (VirtioSlotState d in s.Slots)
        {
            w.Write(d.Slot);
            w.Write(d.DeviceId);
            w.Write(d.Status);
            w.Write(d.DeviceFeaturesSel);
            w.Write(d.DriverFeatures);
            w.Write(d.DriverFeaturesSel);
            w.Write(d.QueueSel);
            w.Write(d.InterruptStatus);
            w.Write(d.ConfigGeneration);
            w.Write((byte)d.Queues.Count);
            foreach (VirtioQueueState q in d.Queues)
            {
                w.Write(q.Size);
                w.Write(q.Ready);
                w.Write(q.Desc);
                w.Write(q.Driver);
                w.Write(q.Device);
                w.Write(q.LastAvail);
                w.Write(q.UsedIndex);
                w.Write(q.KickPending);
            }

            w.Write(d.DeviceState.Length);
            w.Write(d.DeviceState);
        }
    }

    private static VirtioState Read(BinaryReader r)
    {
        int count = r.ReadByte();
        if (count > VirtioMmio.SlotCount)
        {
            throw new InvalidDataException($"virtio state has {count} devices, more than the {VirtioMmio.SlotCount} slots");
        }

        var slots = new VirtioSlotState[count];
        int lastSlot = -1;
        for (int i = 0; i < count; i++)
        {
            byte slot = r.ReadByte();
            if (slot >= VirtioMmio.SlotCount || slot <= lastSlot)
            {
                throw new InvalidDataException($"virtio state: slot {slot} is out of range or out of order");
            }

            lastSlot = slot;
            uint deviceId = r.ReadUInt32();
            uint status = r.ReadUInt32();
            if (status > 0xFF)
            {
                throw new InvalidDataException($"virtio state: status 0x{status:x} has bits above 8");
            }

            uint featuresSel = r.ReadUInt32();
            ulong driverFeatures = r.ReadUInt64();
            uint driverFeaturesSel = r.ReadUInt32();
            uint queueSel = r.ReadUInt32();
            uint isr = r.ReadUInt32();
            if (isr > 3)
            {
                throw new InvalidDataException($"virtio state: interrupt status 0x{isr:x} has bits other than used buffer and configuration change");
            }

            uint generation = r.ReadUInt32();
            int queueCount = r.ReadByte();
            if (queueCount > MaxQueues)
            {
                throw new InvalidDataException($"virtio state: {queueCount} queues, more than {MaxQueues}");
            }

            var queues = new VirtioQueueState[queueCount];
            for (int q = 0; q < queueCount; q++)
            {
                queues[q] = new VirtioQueueState(r.ReadUInt16(), Bool(r), r.ReadUInt64(), r.ReadUInt64(), r.ReadUInt64(), r.ReadUInt16(), r.ReadUInt16(), Bool(r));
            }

            uint n = r.ReadUInt32();
            if (n > MaxDeviceBytes)
            {
                throw new InvalidDataException($"virtio state: {n} device bytes, more than {MaxDeviceBytes}");
            }

            byte[] device = r.ReadBytes((int)n);
            if (device.Length != n)
            {
                throw new EndOfStreamException();
            }

            slots[i] = new VirtioSlotState(slot, deviceId, status, featuresSel, driverFeatures, driverFeaturesSel, queueSel, isr, generation, queues, device);
        }

        return new VirtioState(slots);
    }

    private static bool Bool(BinaryReader r) => r.ReadByte() switch
    {
        0 => false,
        1 => true,
        byte b => throw new InvalidDataException($"virtio state: flag byte {b} is not 0 or 1"),
    };
}
