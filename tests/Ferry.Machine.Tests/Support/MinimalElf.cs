using System.Buffers.Binary;

namespace Ferry.Machine.Tests.Support;

/// <summary>Wraps raw code in an ELF64 RISC-V executable with one PT_LOAD segment (for QEMU's -kernel and Ferry's loader).</summary>
internal static class MinimalElf
{
    public static byte[] Wrap(byte[] code, ulong origin)
    {
        const int CodeOffset = 0x1000;
        var elf = new byte[CodeOffset + code.Length];
        Span<byte> e = elf;
        e[0] = 0x7F;
        e[1] = (byte)'E';
        e[2] = (byte)'L';
        e[3] = (byte)'F';
        e[4] = 2; // ELFCLASS64
        e[5] = 1; // little-endian
        e[6] = 1; // EV_CURRENT
        BinaryPrimitives.WriteUInt16LittleEndian(e[16..], 2); // ET_EXEC
        BinaryPrimitives.WriteUInt16LittleEndian(e[18..], 243); // EM_RISCV
        BinaryPrimitives.WriteUInt32LittleEndian(e[20..], 1);
        BinaryPrimitives.WriteUInt64LittleEndian(e[24..], origin); // entry
        BinaryPrimitives.WriteUInt64LittleEndian(e[32..], 64); // phoff
        BinaryPrimitives.WriteUInt16LittleEndian(e[52..], 64); // ehsize
        BinaryPrimitives.WriteUInt16LittleEndian(e[54..], 56); // phentsize
        BinaryPrimitives.WriteUInt16LittleEndian(e[56..], 1); // phnum
        BinaryPrimitives.WriteUInt16LittleEndian(e[58..], 64); // shentsize
        Span<byte> ph = e[64..];
        BinaryPrimitives.WriteUInt32LittleEndian(ph, 1); // PT_LOAD
        BinaryPrimitives.WriteUInt32LittleEndian(ph[4..], 7); // RWX
        BinaryPrimitives.WriteUInt64LittleEndian(ph[8..], CodeOffset);
        BinaryPrimitives.WriteUInt64LittleEndian(ph[16..], origin);
        BinaryPrimitives.WriteUInt64LittleEndian(ph[24..], origin);
        BinaryPrimitives.WriteUInt64LittleEndian(ph[32..], (ulong)code.Length);
        BinaryPrimitives.WriteUInt64LittleEndian(ph[40..], (ulong)code.Length);
        BinaryPrimitives.WriteUInt64LittleEndian(ph[48..], 0x1000);
        code.CopyTo(e[CodeOffset..]);
        return elf;
    }
}
