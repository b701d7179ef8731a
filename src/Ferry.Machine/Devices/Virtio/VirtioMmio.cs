namespace Ferry.Machine.Devices.Virtio;

/// <summary>
/// A virtio-mmio transport, version 2 (modern; virtio 1.x, 4.2.2), as QEMU 7.2's
/// hw/virtio/virtio-mmio.c with legacy off. QEMU virt has eight at 0x1000_1000 + 0x1000·n
/// (PLIC source n + 1); a slot without a device reads magic, version 2, vendor and device ID 0,
/// which Linux skips. Registers (32-bit accesses; others read 0 and are ignored, as QEMU):
///
///   0x000 MagicValue "virt"   0x004 Version 2      0x008 DeviceID        0x00c VendorID "QEMU"
///   0x010 DeviceFeatures      0x014 DeviceFeaturesSel                    0x020 DriverFeatures
///   0x024 DriverFeaturesSel   0x030 QueueSel       0x034 QueueNumMax     0x038 QueueNum
///   0x044 QueueReady          0x050 QueueNotify    0x060 InterruptStatus 0x064 InterruptACK
///   0x070 Status              0x080/84 QueueDesc   0x090/94 QueueDriver  0x0a0/a4 QueueDevice
///   0x0fc ConfigGeneration    0x100.. device configuration (1, 2, 4 and 8-byte accesses)
///
/// Requests are served on the machine's thread when the driver notifies (so none is in flight
/// when the machine pauses), and at run boundaries for work that could not finish (a wait for
/// an absent page cancelled by a stop) or that came from outside (received frames).
/// Hostile drivers: a bad queue layout or a malformed chain sets DEVICE_NEEDS_RESET (with a
/// configuration-change interrupt once DRIVER_OK), is logged, and the device serves nothing until
/// the driver resets it; the host carries on.
/// </summary>
public sealed class VirtioMmio : IMmioDevice
{
    public const ulong FirstBase = 0x1000_1000;
    public const ulong Stride = 0x1000;
    public const int SlotCount = 8;
    public const int FirstIrq = 1;

    public const uint MagicValue = 0x7472_6976; // "virt"
    public const uint VendorId = 0x554D_4551; // "QEMU"
    public const uint StatusAcknowledge = 1, StatusDriver = 2, StatusDriverOk = 4, StatusFeaturesOk = 8, StatusNeedsReset = 0x40, StatusFailed = 0x80;
    public const uint InterruptUsedBuffer = 1, InterruptConfigChange = 2;

    private readonly InterruptLine _irq;
    private readonly GuestDma _dma;
    private readonly Action<string> _log;
    private readonly SplitQueue[] _queues;

    public VirtioMmio(int slot, VirtioDevice? device, InterruptLine irq, GuestDma dma, Action<string> log)
    {
        Slot = slot;
        Device = device;
        _irq = irq;
        _dma = dma;
        _log = log;
        _queues = new SplitQueue[device?.QueueCount ?? 0];
        for (int i = 0; i < _queues.Length; i++)
        {
            _queues[i] = new SplitQueue(device!.QueueMaxSize);
        }

        if (device is not null)
        {
            device.Transport = this;
        }
    }

    public int Slot { get; }

    public VirtioDevice? Device { get; }

    public string Name => $"virtio_mmio@{BaseAddress:x}";

    public ulong BaseAddress => FirstBase + ((ulong)Slot * Stride);

    public ulong Size => Stride;

    public int Irq => FirstIrq + Slot;

    public uint Status { get; private set; }

    public ulong DriverFeatures { get; private set; }

    public uint InterruptStatus { get; private set; }

    public uint ConfigGeneration { get; private set; }

    public uint DeviceFeaturesSel { get; private set; }

    public uint DriverFeaturesSel { get; private set; }

    public uint QueueSel { get; private set; }

    /// <summary>The last error the guest drove the device into (tests, status), or null.</summary>
    public string? LastError { get; private set; }

    public IReadOnlyList<SplitQueue> Queues => _queues;

    /// <summary>True when <see cref="Poll"/> has work: a notify to retry or external input.</summary>
    public bool PollNeeded
    {
        get
        {
            if (Device is null)
            {
                return false;
            }

            foreach (SplitQueue q in _queues)
            {
                if (q.KickPending)
                {
                    return true;
                }
            }

            return Device.HasExternalWork;
        }
    }

    public bool Negotiated(ulong feature) => (DriverFeatures & feature) == feature && (Status & StatusFeaturesOk) != 0;

    public bool Read(ulong offset, int size, out ulong value)
    {
        value = 0;
        if (offset >= 0x100)
        {
            value = ReadConfig((int)(offset - 0x100), size);
            return true;
        }

        if (size != 4)
        {
            return true; // QEMU logs a guest error and reads 0
        }

        if (Device is null)
        {
            value = offset switch { 0x000 => MagicValue, 0x004 => 2, 0x00c => VendorId, _ => 0 };
            return true;
        }

        SplitQueue? q = QueueSel < _queues.Length ? _queues[QueueSel] : null;
        value = offset switch
        {
            0x000 => MagicValue,
            0x004 => 2,
            0x008 => Device.DeviceId,
            0x00c => VendorId,
            0x010 => DeviceFeaturesSel switch { 0 => (uint)Device.DeviceFeatures, 1 => (uint)(Device.DeviceFeatures >> 32), _ => 0 },
            0x034 => q?.MaxSize ?? 0u,
            0x038 => q?.Size ?? 0u,
            0x044 => q is { Ready: true } ? 1u : 0u,
            0x060 => InterruptStatus,
            0x070 => Status,
            0x080 => (uint)(q?.DescAddress ?? 0),
            0x084 => (uint)((q?.DescAddress ?? 0) >> 32),
            0x090 => (uint)(q?.DriverAddress ?? 0),
            0x094 => (uint)((q?.DriverAddress ?? 0) >> 32),
            0x0a0 => (uint)(q?.DeviceAddress ?? 0),
            0x0a4 => (uint)((q?.DeviceAddress ?? 0) >> 32),
            0x0fc => ConfigGeneration,
            _ => 0u,
        };
        return true;
    }

    public bool Write(ulong offset, int size, ulong value)
    {
        if (Device is null)
        {
            return true;
        }

        if (offset >= 0x100)
        {
            WriteConfig((int)(offset - 0x100), size, value);
            return true;
        }

        if (size != 4)
        {
            return true;
        }

        uint v = (uint)value;
        SplitQueue? q = QueueSel < _queues.Length ? _queues[QueueSel] : null;
        switch (offset)
        {
            case 0x014:
                DeviceFeaturesSel = v;
                break;
            case 0x020:
                if ((Status & StatusFeaturesOk) == 0 && DriverFeaturesSel < 2)
                {
                    int shift = 32 * (int)DriverFeaturesSel;
                    DriverFeatures = (DriverFeatures & ~(0xFFFF_FFFFUL << shift)) | ((ulong)v << shift);
                }

                break;
            case 0x024:
                DriverFeaturesSel = v;
                break;
            case 0x030:
                QueueSel = v;
                break;
            case 0x038 when q is not null:
                q.Size = (ushort)Math.Min(v, 0xFFFFu);
                if (v > 0xFFFF)
                {
                    q.Size = 3; // not a power of two: refused when the queue is made ready
                }

                break;
            case 0x044 when q is not null:
                SetQueueReady(q, v != 0);
                break;
            case 0x050:
                Notify(v);
                break;
            case 0x064:
                InterruptStatus &= ~v;
                UpdateIrq();
                break;
            case 0x070:
                WriteStatus(v);
                break;
            case 0x080 when q is not null:
                q.DescAddress = Low(q.DescAddress, v);
                break;
            case 0x084 when q is not null:
                q.DescAddress = High(q.DescAddress, v);
                break;
            case 0x090 when q is not null:
                q.DriverAddress = Low(q.DriverAddress, v);
                break;
            case 0x094 when q is not null:
                q.DriverAddress = High(q.DriverAddress, v);
                break;
            case 0x0a0 when q is not null:
                q.DeviceAddress = Low(q.DeviceAddress, v);
                break;
            case 0x0a4 when q is not null:
                q.DeviceAddress = High(q.DeviceAddress, v);
                break;
        }

        return true;
    }

    /// <summary>Run boundary: retries notifies that could not be served and lets the device deliver external input.</summary>
    public void Poll()
    {
        if (Device is null || (Status & StatusNeedsReset) != 0)
        {
            return;
        }

        for (int i = 0; i < _queues.Length; i++)
        {
            if (_queues[i].KickPending)
            {
                _queues[i].KickPending = false;
                Serve(i);
            }
        }

        if (Device.HasExternalWork && (Status & StatusDriverOk) != 0)
        {
            Guard(-1);
        }
    }

    /// <summary>Serves queue <paramref name="index"/> as a notify does (devices call it when external work can use new buffers).</summary>
    public void Serve(int index)
    {
        if (Device is null || (uint)index >= (uint)_queues.Length || !_queues[index].Ready || (Status & StatusNeedsReset) != 0)
        {
            return;
        }

        Guard(index);
    }

    /// <summary>Raises the used-buffer interrupt for queue <paramref name="index"/> if its driver wants one (after pushes).</summary>
    public void NotifyUsed(int index)
    {
        if (_queues[index].DriverWantsInterrupt(_dma))
        {
            InterruptStatus |= InterruptUsedBuffer;
            UpdateIrq();
        }
    }

    /// <summary>The device's configuration changed (network status): a configuration-change interrupt once the driver is up.</summary>
    public void NotifyConfigChange()
    {
        ConfigGeneration++;
        if ((Status & StatusDriverOk) != 0)
        {
            InterruptStatus |= InterruptConfigChange;
            UpdateIrq();
        }
    }

    /// <summary>Sets DEVICE_NEEDS_RESET (virtio 1.x 2.1.2) and logs why; the device serves nothing until reset.</summary>
    public void Fail(string reason)
    {
        LastError = reason;
        _log($"{Device?.Name ?? "virtio"} at 0x{BaseAddress:x}: {reason}; the device needs a reset");
        Status |= StatusNeedsReset;
        NotifyConfigChange();
    }

    public VirtioSlotState SaveState()
    {
        var queues = new VirtioQueueState[_queues.Length];
        for (int i = 0; i < queues.Length; i++)
        {
            SplitQueue q = _queues[i];
            queues[i] = new VirtioQueueState(q.Size, q.Ready, q.DescAddress, q.DriverAddress, q.DeviceAddress, q.LastAvail, q.UsedIndex, q.KickPending);
        }

        return new VirtioSlotState((byte)Slot, Device!.DeviceId, Status, DeviceFeaturesSel, DriverFeatures, DriverFeaturesSel, QueueSel,
            InterruptStatus, ConfigGeneration, queues, Device.SaveDeviceState());
    }

    /// <summary>Restores the transport and its device. Drives nothing: the PLIC's saved pending bits hold what the line did.</summary>
    public void RestoreState(VirtioSlotState s)
    {
        VirtioDevice device = Device!;
        if (s.DeviceId != device.DeviceId || s.Queues.Count != _queues.Length)
        {
            throw new InvalidDataException($"virtio slot {Slot}: state is for device {s.DeviceId} with {s.Queues.Count} queues, this machine has {device.Name}");
        }

        if ((s.DriverFeatures & ~device.DeviceFeatures) != 0)
        {
            throw new InvalidDataException($"virtio slot {Slot}: driver features 0x{s.DriverFeatures:x} are not all offered by {device.Name}");
        }

        for (int i = 0; i < _queues.Length; i++)
        {
            VirtioQueueState qs = s.Queues[i];
            SplitQueue q = _queues[i];
            q.Size = qs.Size;
            q.Ready = qs.Ready;
            q.DescAddress = qs.Desc;
            q.DriverAddress = qs.Driver;
            q.DeviceAddress = qs.Device;
            q.LastAvail = qs.LastAvail;
            q.UsedIndex = qs.UsedIndex;
            q.KickPending = qs.KickPending;
            if (q.Ready && q.Validate(_dma) is { } error)
            {
                throw new InvalidDataException($"virtio slot {Slot} queue {i}: {error}");
            }
        }

        device.RestoreDeviceState(s.DeviceState);
        Status = s.Status;
        DeviceFeaturesSel = s.DeviceFeaturesSel;
        DriverFeatures = s.DriverFeatures;
        DriverFeaturesSel = s.DriverFeaturesSel;
        QueueSel = s.QueueSel;
        InterruptStatus = s.InterruptStatus;
        ConfigGeneration = s.ConfigGeneration;
        LastError = null;
    }

    private static ulong Low(ulong old, uint v) => (old & 0xFFFF_FFFF_0000_0000UL) | v;

    private static ulong High(ulong old, uint v) => (old & 0xFFFF_FFFFUL) | ((ulong)v << 32);

    /// <summary>Serves queue <paramref name="queue"/> (or, for -1, the device's external work) and turns what it throws into the transport's state.</summary>
    private void Guard(int queue)
    {
        ushort usedBefore = queue >= 0 ? _queues[queue].UsedIndex : (ushort)0;
        try
        {
            if (queue >= 0)
            {
                Device!.ProcessQueue(queue, _queues[queue], _dma);
            }
            else
            {
                Device!.Poll(_dma);
            }
        }
        catch (DmaCancelledException)
        {
            if (queue >= 0)
            {
                _queues[queue].KickPending = true;
            }
        }
        catch (VirtioDriverException e)
        {
            Fail(queue >= 0 ? $"queue {queue}: {e.Message}" : e.Message);
        }

        if (queue >= 0 && _queues[queue].UsedIndex != usedBefore && (Status & StatusNeedsReset) == 0)
        {
            NotifyUsed(queue);
        }
    }

    private void Notify(uint index)
    {
        if (index < _queues.Length && (Status & StatusDriverOk) != 0)
        {
            Serve((int)index);
        }
    }

    private void SetQueueReady(SplitQueue q, bool ready)
    {
        if (!ready)
        {
            q.Ready = false;
            return;
        }

        if (q.Validate(_dma) is { } error)
        {
            Fail($"queue {QueueSel}: {error}");
            return;
        }

        q.Ready = true;
    }

    private void WriteStatus(uint v)
    {
        if (v == 0)
        {
            Reset();
            return;
        }

        if ((v & StatusFeaturesOk) != 0 && (Status & StatusFeaturesOk) == 0)
        {
            // The device accepts only features it offers, and only a modern driver (VERSION_1).
            bool acceptable = (DriverFeatures & ~Device!.DeviceFeatures) == 0 && (DriverFeatures & VirtioDevice.FeatureVersion1) != 0;
            if (!acceptable)
            {
                v &= ~StatusFeaturesOk;
            }
        }

        Status = (v & 0xFF & ~StatusNeedsReset) | (Status & StatusNeedsReset);
    }

    private void Reset()
    {
        Status = 0;
        DriverFeatures = 0;
        DeviceFeaturesSel = DriverFeaturesSel = QueueSel = 0;
        InterruptStatus = 0;
        LastError = null;
        foreach (SplitQueue q in _queues)
        {
            q.Reset();
        }

        Device!.Reset();
        UpdateIrq();
    }

    private ulong ReadConfig(int offset, int size)
    {
        if (Device is null || offset < 0 || offset + size > Device.ConfigSize)
        {
            return 0;
        }

        ulong value = 0;
        for (int i = 0; i < size; i++)
        {
            value |= (ulong)Device.ReadConfig(offset + i) << (8 * i);
        }

        return value;
    }

    private void WriteConfig(int offset, int size, ulong value)
    {
        if (offset < 0 || offset + size > Device!.ConfigSize)
        {
            return;
        }

        for (int i = 0; i < size; i++)
        {
            Device.WriteConfig(offset + i, (byte)(value >> (8 * i)));
        }
    }

    private void UpdateIrq() => _irq.Set(InterruptStatus != 0);
}
