using System.Buffers.Binary;

namespace Ferry.Machine.Devices;

/// <summary>
/// QEMU virt's mask ROM at 0x1000 (0xf000 bytes): the reset vector QEMU writes there
/// (hw/riscv/boot.c riscv_setup_rom_reset_vec) followed by the <c>struct fw_dynamic_info</c>
/// that OpenSBI's fw_dynamic reads through a2. Read-only; writes are ignored as QEMU's ROM
/// ignores them.
///
/// Its content is a function of the memory size alone (the device tree's address), so it is
/// rebuilt from the machine's configuration and carries no state. The hart does not fetch
/// from it: the loader sets pc, a0, a1 and a2 to what these instructions would, and OpenSBI
/// reads the info structure with ordinary loads.
///
///   0x1000  auipc t0, 0           0x1018  u64 start address (0x8000_0000)
///   0x1004  addi  a2, t0, 0x28    0x1020  u64 device tree address
///   0x1008  csrr  a0, mhartid     0x1028  fw_dynamic_info: u64 magic "OSBI", version 2,
///   0x100c  ld    a1, 32(t0)              next_addr, next_mode, options, boot_hart
///   0x1010  ld    t0, 24(t0)
///   0x1014  jr    t0
/// </summary>
public sealed class MaskRom : IMmioDevice
{
    public const ulong DefaultBase = 0x1000;
    public const ulong RomSize = 0xf000;

    /// <summary>Where QEMU puts the fw_dynamic_info structure: right after the 40-byte reset vector.</summary>
    public const ulong FwDynamicInfoAddress = DefaultBase + 0x28;

    public const ulong FwDynamicMagic = 0x4942_534f; // "OSBI"
    public const ulong FwDynamicVersion = 2;

    private readonly byte[] _rom = new byte[0x58];

    /// <param name="startAddress">where the reset vector jumps (the firmware's entry)</param>
    /// <param name="deviceTreeAddress">what the reset vector loads into a1</param>
    /// <param name="nextAddress">fw_dynamic_info.next_addr (the kernel's entry)</param>
    public MaskRom(ulong startAddress, ulong deviceTreeAddress, ulong nextAddress)
    {
        Span<byte> r = _rom;
        uint[] vector = [0x0000_0297, 0x0282_8613, 0xf140_2573, 0x0202_b583, 0x0182_b283, 0x0002_8067];
        for (int i = 0; i < vector.Length; i++)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(r[(4 * i)..], vector[i]);
        }

        BinaryPrimitives.WriteUInt64LittleEndian(r[0x18..], startAddress);
        BinaryPrimitives.WriteUInt64LittleEndian(r[0x20..], deviceTreeAddress);
        BinaryPrimitives.WriteUInt64LittleEndian(r[0x28..], FwDynamicMagic);
        BinaryPrimitives.WriteUInt64LittleEndian(r[0x30..], FwDynamicVersion);
        BinaryPrimitives.WriteUInt64LittleEndian(r[0x38..], nextAddress);
        BinaryPrimitives.WriteUInt64LittleEndian(r[0x40..], 1); // next_mode: S
        BinaryPrimitives.WriteUInt64LittleEndian(r[0x48..], 0); // options
        BinaryPrimitives.WriteUInt64LittleEndian(r[0x50..], ulong.MaxValue); // boot_hart: -1, any (as QEMU)
    }

    public string Name => "mrom";

    public ulong BaseAddress => DefaultBase;

    public ulong Size => RomSize;

    public bool Read(ulong offset, int size, out ulong value)
    {
        value = 0;
        for (int i = 0; i < size; i++)
        {
            ulong at = offset + (ulong)i;
            if (at < (ulong)_rom.Length)
            {
                value |= (ulong)_rom[at] << (8 * i);
            }
        }

        return true;
    }

    public bool Write(ulong offset, int size, ulong value) => true;
}
