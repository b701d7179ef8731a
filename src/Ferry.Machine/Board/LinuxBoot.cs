using System.Buffers.Binary;
using System.IO.Compression;
using Ferry.Machine.Cpu;
using Ferry.Machine.Devices;
using Ferry.Machine.Memory;

namespace Ferry.Machine.Board;

/// <summary>What boots a Linux VM: firmware, kernel, initramfs and command line, as files' bytes.</summary>
public sealed record LinuxBootFiles
{
    /// <summary>The M-mode firmware (OpenSBI fw_dynamic.bin or fw_jump.bin), loaded at 0x8000_0000; null boots the kernel in M mode at 0x8000_0000 (QEMU's -bios none).</summary>
    public byte[]? Firmware { get; init; }

    /// <summary>The kernel: a RISC-V Linux Image, raw or gzip-compressed (Image.gz).</summary>
    public required byte[] Kernel { get; init; }

    /// <summary>The initramfs as the kernel reads it (a cpio, compressed or not), or null.</summary>
    public byte[]? Initrd { get; init; }

    public string CommandLine { get; init; } = "";

    /// <summary>Names used in error messages.</summary>
    public string KernelName { get; init; } = "kernel";
}

/// <summary>
/// Boots a Linux guest as QEMU 7.2's virt board does (hw/riscv/boot.c, hw/riscv/virt.c):
/// the firmware at 0x8000_0000; the kernel Image at the next 2 MiB boundary past the firmware
/// (0x8020_0000, where fw_dynamic's next_addr and fw_jump's built-in address point) or at
/// 0x8000_0000 without firmware; the initramfs at kernel + min(RAM/2, 128 MiB) (QEMU's
/// riscv_load_initrd: 0x8820_0000 for 256 MiB); the device tree at the top of RAM (capped at
/// 3 GiB), 2 MiB aligned down (riscv_load_fdt: 0x8fe0_0000 for 256 MiB). The hart starts in M
/// mode at 0x8000_0000 with a0 = hart id, a1 = the device tree, a2 = the fw_dynamic_info in the
/// mask ROM (QEMU's reset vector passes a2 to any firmware; fw_jump ignores it).
///
/// The reset vector is not executed: the hart cannot fetch from a device, and its six
/// instructions only load those three registers and jump, so the loader sets them. The
/// instruction counts therefore start 6 below QEMU's.
/// </summary>
public static class LinuxBoot
{
    public const ulong FirmwareAddress = GuestMemory.DefaultBase;

    /// <summary>Where the kernel goes behind OpenSBI (QEMU: firmware end aligned up to 2 MiB; OpenSBI 1.1 is under 2 MiB).</summary>
    public const ulong KernelAddress = 0x8020_0000;

    /// <summary>Device trees larger than this are refused (the virt tree is about 2 KiB).</summary>
    public const int MaxDeviceTreeSize = 64 << 10;

    /// <summary>/cpus/cpu@0 riscv,isa: what the hart implements (Zihintpause's pause is an ordinary FENCE to it).</summary>
    public const string Isa = "rv64imafdc_zicntr_zicsr_zifencei_zihintpause";

    /// <summary>The default command line for the built-in kernel (the 16550A console; earlycon prints through SBI until the driver is up).</summary>
    public const string DefaultCommandLine = "console=ttyS0 earlycon=sbi";

    private const int Mib = 1 << 20;

    /// <summary>
    /// The rng-seed every boot gets: QEMU writes 32 random bytes per boot; a fixed seed keeps
    /// runs identical (the kernel's RNG state, and so ASLR, depend on it).
    /// </summary>
    public static ReadOnlySpan<byte> RngSeed =>
    [
        0x46, 0x65, 0x72, 0x72, 0x79, 0x20, 0x72, 0x6e, 0x67, 0x2d, 0x73, 0x65, 0x65, 0x64, 0x20, 0x31,
        0x9e, 0x37, 0x79, 0xb9, 0x7f, 0x4a, 0x7c, 0x15, 0xf3, 0x9c, 0xc0, 0x60, 0x5c, 0xed, 0xc8, 0x34,
    ];

    /// <summary>
    /// QEMU's device tree address for this RAM size: min(RAM end, 3 GiB) minus the tree, 2 MiB
    /// aligned down. The tree's size is taken as its limit (64 KiB), so the address depends on the
    /// memory size alone (the mask ROM holds it); for RAM in whole 2 MiB units, as every size
    /// tested (64 MiB to 2 GiB), this is QEMU's address whatever the tree's size below 2 MiB.
    /// </summary>
    public static ulong DeviceTreeAddress(ulong memorySize)
    {
        ulong end = Math.Min(GuestMemory.DefaultBase + memorySize, 3072UL * Mib);
        ulong below = end - MaxDeviceTreeSize;
        ulong address = below & ~((ulong)(2 * Mib) - 1);
        return address < GuestMemory.DefaultBase ? GuestMemory.DefaultBase : address;
    }

    /// <summary>QEMU's initrd address: the kernel's address plus min(RAM/2, 128 MiB).</summary>
    public static ulong InitrdAddress(ulong kernelAddress, ulong memorySize) => kernelAddress + Math.Min(memorySize / 2, 128UL * Mib);

    private static readonly Lock LastGunzipLock = new();
    private static (byte[] Gzip, byte[] Image)? _lastGunzip;

    /// <summary>
    /// The kernel Image, gunzipped if it is gzip data, checked against the RISC-V Image header.
    /// The returned array is shared (read it, never write it): a host boots the same kernel in
    /// VM after VM, so the last gunzipped image is kept and given again for the same gzip bytes
    /// (compared in full; the gunzip costs 6 to 8 ms of a 23 M-instruction boot).
    /// </summary>
    public static byte[] ReadKernelImage(byte[] kernel, string name)
    {
        byte[] image = kernel;
        if (kernel.Length >= 2 && kernel[0] == 0x1f && kernel[1] == 0x8b)
        {
            lock (LastGunzipLock)
            {
                if (_lastGunzip is { } last && last.Gzip.AsSpan().SequenceEqual(kernel))
                {
                    return last.Image;
                }
            }

            try
            {
                using var input = new GZipStream(new MemoryStream(kernel), CompressionMode.Decompress);
                using var output = new MemoryStream();
                input.CopyTo(output);
                image = output.ToArray();
            }
            catch (InvalidDataException e)
            {
                throw new GuestImageException($"{name}: bad gzip data ({e.Message})");
            }
        }

        // The RISC-V Image header (Documentation/riscv/boot-image-header.rst): magic2 "RSC\x05" at 0x38.
        if (image.Length < 64 || BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(0x38)) != 0x0543_5352)
        {
            throw new GuestImageException($"{name}: not a RISC-V Linux Image (no \"RSC\\x05\" magic at 0x38)");
        }

        if (!ReferenceEquals(image, kernel))
        {
            lock (LastGunzipLock)
            {
                _lastGunzip = ((byte[])kernel.Clone(), image);
            }
        }

        return image;
    }

    /// <summary>Loads the firmware, kernel, initramfs and device tree into RAM and points the hart at the firmware.</summary>
    public static LinuxBootLayout Load(VirtMachine machine, LinuxBootFiles files)
    {
        GuestMemory memory = machine.Memory;
        ulong ramEnd = memory.BaseAddress + memory.Size;
        byte[] kernel = ReadKernelImage(files.Kernel, files.KernelName);
        ulong imageSize = Math.Max(BinaryPrimitives.ReadUInt64LittleEndian(kernel.AsSpan(0x10)), (ulong)kernel.Length);

        ulong kernelAddress = FirmwareAddress;
        if (files.Firmware is { } firmware)
        {
            if ((ulong)firmware.Length > KernelAddress - FirmwareAddress)
            {
                throw new GuestImageException($"firmware: {firmware.Length} bytes do not fit below the kernel at 0x{KernelAddress:x}");
            }

            kernelAddress = KernelAddress;
        }

        ulong dtbAddress = DeviceTreeAddress(memory.Size);
        ulong initrdStart = InitrdAddress(kernelAddress, memory.Size);
        (ulong Start, ulong End)? initrd = null;
        if (files.Initrd is { } rd)
        {
            initrd = (initrdStart, initrdStart + (ulong)rd.Length);
            if (initrdStart + (ulong)rd.Length > dtbAddress)
            {
                throw new GuestImageException($"initrd: {rd.Length} bytes at 0x{initrdStart:x} run into the device tree at 0x{dtbAddress:x} ({memory.Size >> 20} MiB of RAM)");
            }
        }

        if (kernelAddress + imageSize > (initrd?.Start ?? dtbAddress))
        {
            throw new GuestImageException($"{files.KernelName}: its 0x{imageSize:x} bytes at 0x{kernelAddress:x} do not fit in {memory.Size >> 20} MiB of RAM");
        }

        byte[] dtb = VirtDeviceTree.Build(new DeviceTreeOptions
        {
            MemorySize = memory.Size,
            Isa = Isa,
            BootArgs = files.CommandLine,
            Initrd = initrd,
            RngSeed = RngSeed.ToArray(),
            VirtioSlots = [.. machine.VirtioDevices.Select(t => t.Slot)],
        });
        if (dtb.Length > MaxDeviceTreeSize || dtbAddress + (ulong)dtb.Length > ramEnd)
        {
            throw new GuestImageException($"device tree: {dtb.Length} bytes do not fit at 0x{dtbAddress:x}");
        }

        if (files.Firmware is { } fw)
        {
            memory.WritePhysical(FirmwareAddress, fw);
        }

        memory.WritePhysical(kernelAddress, kernel);
        if (files.Initrd is { } initrdBytes)
        {
            memory.WritePhysical(initrdStart, initrdBytes);
        }

        memory.WritePhysical(dtbAddress, dtb);

        Hart hart = machine.Hart;
        hart.Pc = FirmwareAddress;
        hart.SetRegister(10, hart.HartId);
        hart.SetRegister(11, dtbAddress);
        hart.SetRegister(12, MaskRom.FwDynamicInfoAddress);
        hart.SetRegister(5, FirmwareAddress); // t0, as the reset vector leaves it
        memory.Dirty.ClearAll();
        return new LinuxBootLayout(kernelAddress, (ulong)kernel.Length, initrd, dtbAddress, (ulong)dtb.Length);
    }
}

/// <summary>Where the loader put things (for messages and tests).</summary>
public sealed record LinuxBootLayout(ulong KernelAddress, ulong KernelSize, (ulong Start, ulong End)? Initrd, ulong DeviceTreeAddress, ulong DeviceTreeSize);
