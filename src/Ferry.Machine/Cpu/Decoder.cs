namespace Ferry.Machine.Cpu;

/// <summary>
/// The decode table: bit pattern (mask, match) -> operation and operand format, in the
/// spirit of the ISA manual's opcode map. Decoding is not on the hot path: each 2-byte slot of
/// a code page is decoded once into the hart's decode cache (<see cref="DecodedInsn"/>).
/// Compressed instructions are expanded to the operation of their 32-bit equivalent.
/// </summary>
public static class Decoder
{
    private enum Format : byte
    {
        R, I, S, B, U, J, Shift64, Shift32, Csr, CsrImm, Amo, None,
    }

    private readonly record struct Entry(uint Mask, uint Match, Op Op, Format Format);

    private const uint Opcode = 0x0000_007F;
    private const uint F3 = 0x0000_707F;
    private const uint F7F3 = 0xFE00_707F;
    private const uint F6F3 = 0xFC00_707F;
    private const uint Amo5 = 0xF800_707F;
    private const uint Exact = 0xFFFF_FFFF;

    private static readonly Entry[] Table =
    [
        // RV64I
        new(Opcode, 0x37, Op.Lui, Format.U),
        new(Opcode, 0x17, Op.Auipc, Format.U),
        new(Opcode, 0x6F, Op.Jal, Format.J),
        new(F3, 0x67, Op.Jalr, Format.I),
        new(F3, 0x0063, Op.Beq, Format.B),
        new(F3, 0x1063, Op.Bne, Format.B),
        new(F3, 0x4063, Op.Blt, Format.B),
        new(F3, 0x5063, Op.Bge, Format.B),
        new(F3, 0x6063, Op.Bltu, Format.B),
        new(F3, 0x7063, Op.Bgeu, Format.B),
        new(F3, 0x0003, Op.Lb, Format.I),
        new(F3, 0x1003, Op.Lh, Format.I),
        new(F3, 0x2003, Op.Lw, Format.I),
        new(F3, 0x3003, Op.Ld, Format.I),
        new(F3, 0x4003, Op.Lbu, Format.I),
        new(F3, 0x5003, Op.Lhu, Format.I),
        new(F3, 0x6003, Op.Lwu, Format.I),
        new(F3, 0x0023, Op.Sb, Format.S),
        new(F3, 0x1023, Op.Sh, Format.S),
        new(F3, 0x2023, Op.Sw, Format.S),
        new(F3, 0x3023, Op.Sd, Format.S),
        new(F3, 0x0013, Op.Addi, Format.I),
        new(F3, 0x2013, Op.Slti, Format.I),
        new(F3, 0x3013, Op.Sltiu, Format.I),
        new(F3, 0x4013, Op.Xori, Format.I),
        new(F3, 0x6013, Op.Ori, Format.I),
        new(F3, 0x7013, Op.Andi, Format.I),
        new(F6F3, 0x0000_1013, Op.Slli, Format.Shift64),
        new(F6F3, 0x0000_5013, Op.Srli, Format.Shift64),
        new(F6F3, 0x4000_5013, Op.Srai, Format.Shift64),
        new(F7F3, 0x0000_0033, Op.Add, Format.R),
        new(F7F3, 0x4000_0033, Op.Sub, Format.R),
        new(F7F3, 0x0000_1033, Op.Sll, Format.R),
        new(F7F3, 0x0000_2033, Op.Slt, Format.R),
        new(F7F3, 0x0000_3033, Op.Sltu, Format.R),
        new(F7F3, 0x0000_4033, Op.Xor, Format.R),
        new(F7F3, 0x0000_5033, Op.Srl, Format.R),
        new(F7F3, 0x4000_5033, Op.Sra, Format.R),
        new(F7F3, 0x0000_6033, Op.Or, Format.R),
        new(F7F3, 0x0000_7033, Op.And, Format.R),
        new(F3, 0x001B, Op.Addiw, Format.I),
        new(F7F3, 0x0000_101B, Op.Slliw, Format.Shift32),
        new(F7F3, 0x0000_501B, Op.Srliw, Format.Shift32),
        new(F7F3, 0x4000_501B, Op.Sraiw, Format.Shift32),
        new(F7F3, 0x0000_003B, Op.Addw, Format.R),
        new(F7F3, 0x4000_003B, Op.Subw, Format.R),
        new(F7F3, 0x0000_103B, Op.Sllw, Format.R),
        new(F7F3, 0x0000_503B, Op.Srlw, Format.R),
        new(F7F3, 0x4000_503B, Op.Sraw, Format.R),
        new(F3, 0x000F, Op.Fence, Format.None),
        new(Exact, 0x0000_0073, Op.Ecall, Format.None),
        new(Exact, 0x0010_0073, Op.Ebreak, Format.None),

        // Zifencei
        new(F3, 0x100F, Op.FenceI, Format.None),

        // M
        new(F7F3, 0x0200_0033, Op.Mul, Format.R),
        new(F7F3, 0x0200_1033, Op.Mulh, Format.R),
        new(F7F3, 0x0200_2033, Op.Mulhsu, Format.R),
        new(F7F3, 0x0200_3033, Op.Mulhu, Format.R),
        new(F7F3, 0x0200_4033, Op.Div, Format.R),
        new(F7F3, 0x0200_5033, Op.Divu, Format.R),
        new(F7F3, 0x0200_6033, Op.Rem, Format.R),
        new(F7F3, 0x0200_7033, Op.Remu, Format.R),
        new(F7F3, 0x0200_003B, Op.Mulw, Format.R),
        new(F7F3, 0x0200_403B, Op.Divw, Format.R),
        new(F7F3, 0x0200_503B, Op.Divuw, Format.R),
        new(F7F3, 0x0200_603B, Op.Remw, Format.R),
        new(F7F3, 0x0200_703B, Op.Remuw, Format.R),

        // A (aq/rl in bits 26:25 are accepted and need no action on one in-order hart)
        new(Amo5 | 0x01F0_0000, 0x1000_202F, Op.LrW, Format.Amo),
        new(Amo5, 0x1800_202F, Op.ScW, Format.Amo),
        new(Amo5, 0x0800_202F, Op.AmoswapW, Format.Amo),
        new(Amo5, 0x0000_202F, Op.AmoaddW, Format.Amo),
        new(Amo5, 0x2000_202F, Op.AmoxorW, Format.Amo),
        new(Amo5, 0x6000_202F, Op.AmoandW, Format.Amo),
        new(Amo5, 0x4000_202F, Op.AmoorW, Format.Amo),
        new(Amo5, 0x8000_202F, Op.AmominW, Format.Amo),
        new(Amo5, 0xA000_202F, Op.AmomaxW, Format.Amo),
        new(Amo5, 0xC000_202F, Op.AmominuW, Format.Amo),
        new(Amo5, 0xE000_202F, Op.AmomaxuW, Format.Amo),
        new(Amo5 | 0x01F0_0000, 0x1000_302F, Op.LrD, Format.Amo),
        new(Amo5, 0x1800_302F, Op.ScD, Format.Amo),
        new(Amo5, 0x0800_302F, Op.AmoswapD, Format.Amo),
        new(Amo5, 0x0000_302F, Op.AmoaddD, Format.Amo),
        new(Amo5, 0x2000_302F, Op.AmoxorD, Format.Amo),
        new(Amo5, 0x6000_302F, Op.AmoandD, Format.Amo),
        new(Amo5, 0x4000_302F, Op.AmoorD, Format.Amo),
        new(Amo5, 0x8000_302F, Op.AmominD, Format.Amo),
        new(Amo5, 0xA000_302F, Op.AmomaxD, Format.Amo),
        new(Amo5, 0xC000_302F, Op.AmominuD, Format.Amo),
        new(Amo5, 0xE000_302F, Op.AmomaxuD, Format.Amo),

        // Zicsr
        new(F3, 0x1073, Op.Csrrw, Format.Csr),
        new(F3, 0x2073, Op.Csrrs, Format.Csr),
        new(F3, 0x3073, Op.Csrrc, Format.Csr),
        new(F3, 0x5073, Op.Csrrwi, Format.CsrImm),
        new(F3, 0x6073, Op.Csrrsi, Format.CsrImm),
        new(F3, 0x7073, Op.Csrrci, Format.CsrImm),

        // Privileged
        new(Exact, 0x3020_0073, Op.Mret, Format.None),
        new(Exact, 0x1020_0073, Op.Sret, Format.None),
        new(Exact, 0x1050_0073, Op.Wfi, Format.None),
        new(0xFE00_7FFF, 0x1200_0073, Op.SfenceVma, Format.R),
    ];

    /// <summary>Table entries grouped by major opcode (bits 6:0), built once.</summary>
    private static readonly Entry[][] ByOpcode = BuildIndex();

    private static Entry[][] BuildIndex()
    {
        var groups = new List<Entry>[128];
        foreach (Entry e in Table)
        {
            (groups[e.Match & 0x7F] ??= []).Add(e);
        }

        var index = new Entry[128][];
        for (int i = 0; i < 128; i++)
        {
            index[i] = groups[i]?.ToArray() ?? [];
        }

        return index;
    }

    /// <summary>Decodes a 32-bit instruction (low two bits 11).</summary>
    public static DecodedInsn Decode32(uint raw)
    {
        foreach (Entry e in ByOpcode[raw & 0x7F])
        {
            if ((raw & e.Mask) == e.Match)
            {
                return Build(e.Op, e.Format, raw);
            }
        }

        return Illegal(raw, 4);
    }

    /// <summary>Decodes an instruction given its first 16 bits and, for 32-bit ones, the next 16.</summary>
    public static DecodedInsn Decode(uint raw)
        => (raw & 3) == 3 ? Decode32(raw) : Compressed.Expand((ushort)raw);

    internal static DecodedInsn Illegal(uint raw, byte length)
        => new() { Op = Op.Illegal, Raw = raw, Length = length, Rd = DecodedInsn.SinkRegister };

    private static DecodedInsn Build(Op op, Format format, uint raw)
    {
        byte rd = (byte)((raw >> 7) & 31);
        byte rs1 = (byte)((raw >> 15) & 31);
        byte rs2 = (byte)((raw >> 20) & 31);
        int imm = format switch
        {
            Format.I or Format.Csr or Format.CsrImm => format == Format.I ? (int)raw >> 20 : (int)(raw >> 20),
            Format.S => (((int)raw >> 25) << 5) | (int)((raw >> 7) & 0x1F),
            Format.B => (((int)raw >> 31) << 12) | (int)(((raw >> 7) & 1) << 11) | (int)(((raw >> 25) & 0x3F) << 5) | (int)(((raw >> 8) & 0xF) << 1),
            Format.U => (int)(raw & 0xFFFF_F000),
            Format.J => (((int)raw >> 31) << 20) | (int)(((raw >> 12) & 0xFF) << 12) | (int)(((raw >> 20) & 1) << 11) | (int)(((raw >> 21) & 0x3FF) << 1),
            Format.Shift64 => (int)((raw >> 20) & 0x3F),
            Format.Shift32 => (int)((raw >> 20) & 0x1F),
            _ => 0,
        };

        // Formats without a destination register must not alias one.
        if (format is Format.S or Format.B or Format.None || op == Op.SfenceVma)
        {
            rd = 0;
        }

        return Make(op, rd, rs1, rs2, imm, raw, 4);
    }

    internal static DecodedInsn Make(Op op, int rd, int rs1, int rs2, int imm, uint raw, byte length) => new()
    {
        Op = op,
        Rd = rd == 0 ? DecodedInsn.SinkRegister : (byte)rd,
        Rs1 = (byte)rs1,
        Rs2 = (byte)rs2,
        Imm = imm,
        Raw = raw,
        Length = length,
    };
}
