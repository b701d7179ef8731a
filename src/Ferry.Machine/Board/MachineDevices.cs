using Ferry.Machine.Devices.Virtio;

namespace Ferry.Machine.Board;

/// <summary>
/// The virtio devices a VM has and their host backends: a raw disk image (virtio-blk) and a TAP
/// network interface (virtio-net). Part of what defines a VM beside <see cref="MachineConfig"/>:
/// a migration's destination builds the same devices (the same disk path: storage both hosts
/// see; its own TAP on the same bridge, with the VM's MAC).
/// Devices take QEMU virt's virtio-mmio slots from the highest down, in this order (disk, then
/// network), as QEMU fills them for `-device virtio-blk-device -device virtio-net-device`.
/// </summary>
public sealed record MachineDevices
{
    public static readonly MachineDevices None = new();

    /// <summary>A raw disk image (it must exist; its size is the disk's), or null for no disk.</summary>
    public string? Disk { get; init; }

    public bool DiskReadOnly { get; init; }

    /// <summary>The network card's TAP backend, or null for none.</summary>
    public NetBackendOptions? Net { get; init; }

    public bool IsEmpty => Disk is null && Net is null;
}
