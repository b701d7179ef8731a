namespace Ferry.Machine.Devices.Virtio;

/// <summary>
/// A virtio device model behind a <see cref="VirtioMmio"/> transport: its identity, features,
/// queues and configuration space, and what it does with a queue's buffers. The transport owns
/// the common state (status, negotiated features, queues, interrupt status) and calls the model
/// on the machine's thread only.
/// </summary>
public abstract class VirtioDevice : IDisposable
{
    /// <summary>VIRTIO_F_VERSION_1 (modern device; the only kind Ferry offers).</summary>
    public const ulong FeatureVersion1 = 1UL << 32;

    /// <summary>VIRTIO_RING_F_INDIRECT_DESC.</summary>
    public const ulong FeatureIndirectDesc = 1UL << 28;

    /// <summary>"virtio-blk", "virtio-net": for logs and errors.</summary>
    public abstract string Name { get; }

    /// <summary>The virtio device ID (1 network, 2 block).</summary>
    public abstract uint DeviceId { get; }

    /// <summary>Every feature bit the device offers (VERSION_1 included).</summary>
    public abstract ulong DeviceFeatures { get; }

    public abstract int QueueCount { get; }

    /// <summary>QueueNumMax (QEMU's virtio-blk and virtio-net default to 256).</summary>
    public virtual ushort QueueMaxSize => 256;

    public abstract int ConfigSize { get; }

    /// <summary>The transport this device is plugged into (set once by the transport).</summary>
    public VirtioMmio Transport { get; internal set; } = null!;

    /// <summary>A byte of the device-specific configuration space (offset below <see cref="ConfigSize"/>).</summary>
    public abstract byte ReadConfig(int offset);

    public virtual void WriteConfig(int offset, byte value)
    {
    }

    /// <summary>
    /// Serves the available buffers of queue <paramref name="queue"/>: for each chain
    /// <see cref="SplitQueue.TryPeek"/> returns, act and <see cref="SplitQueue.Push"/>. May throw
    /// <see cref="VirtioDriverException"/> (the transport sets DEVICE_NEEDS_RESET) or
    /// <see cref="DmaCancelledException"/> (the transport retries later).
    /// </summary>
    public abstract void ProcessQueue(int queue, SplitQueue q, GuestDma dma);

    /// <summary>The driver reset the device (status 0): forget device-side state other than configuration.</summary>
    public virtual void Reset()
    {
    }

    /// <summary>Work the device has from outside the guest (network frames): true when <see cref="Poll"/> should run at the next run boundary.</summary>
    public virtual bool HasExternalWork => false;

    /// <summary>Run boundary, machine thread: serve external work (deliver received frames).</summary>
    public virtual void Poll(GuestDma dma)
    {
    }

    /// <summary>The device-specific part of the saved state (beyond the transport's).</summary>
    public virtual byte[] SaveDeviceState() => [];

    /// <summary>Restores <see cref="SaveDeviceState"/>'s bytes; throws <see cref="InvalidDataException"/> on anything malformed.</summary>
    public virtual void RestoreDeviceState(ReadOnlySpan<byte> state)
    {
        if (!state.IsEmpty)
        {
            throw new InvalidDataException($"{Name} state has {state.Length} unexpected bytes");
        }
    }

    public virtual void Dispose()
    {
        GC.SuppressFinalize(this);
    }
}
