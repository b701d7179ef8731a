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

        /// <summary>F/D register forms: rs3 and the rm field packed into Imm.</summary>
        Fp,
    }

    private readonly record struct Entry(uint Mask, uint Match, Op Op, Format Format);

    private const uint Opcode = 0x0000_007F;
    private const uint F3 = 0x0000_707F;
    private const uint F7F3 = 0xFE00_707F;
    private const uint F6F3 = 0xFC00_707F;
    private const uint Amo5 = 0xF800_707F;
    private const uint Exact = 0xFFFF_FFFF;
    private const uint F7 = 0xFE00_007F;          // funct7 + opcode (rm free)
    private const uint F7Rs2 = 0xFFF0_007F;       // funct7 + rs2 + opcode (rm free)
    private const uint F7Rs2F3 = 0xFFF0_707F;     // funct7 + rs2 + funct3 + opcode
    private const uint Fma = 0x0600_007F;         // fmt + opcode

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

        // F and D: loads and stores
        new(F3, 0x2007, Op.Flw, Format.I),
        new(F3, 0x3007, Op.Fld, Format.I),
        new(F3, 0x2027, Op.Fsw, Format.S),
        new(F3, 0x3027, Op.Fsd, Format.S),

        // F (fmt = S)
        new(F7, 0x00000053, Op.FaddS, Format.Fp),
        new(F7, 0x08000053, Op.FsubS, Format.Fp),
        new(F7, 0x10000053, Op.FmulS, Format.Fp),
        new(F7, 0x18000053, Op.FdivS, Format.Fp),
        new(F7Rs2, 0x58000053, Op.FsqrtS, Format.Fp),
        new(F7F3, 0x20000053, Op.FsgnjS, Format.Fp),
        new(F7F3, 0x20001053, Op.FsgnjnS, Format.Fp),
        new(F7F3, 0x20002053, Op.FsgnjxS, Format.Fp),
        new(F7F3, 0x28000053, Op.FminS, Format.Fp),
        new(F7F3, 0x28001053, Op.FmaxS, Format.Fp),
        new(F7Rs2, 0xC0000053, Op.FcvtWS, Format.Fp),
        new(F7Rs2, 0xC0100053, Op.FcvtWuS, Format.Fp),
        new(F7Rs2, 0xC0200053, Op.FcvtLS, Format.Fp),
        new(F7Rs2, 0xC0300053, Op.FcvtLuS, Format.Fp),
        new(F7Rs2F3, 0xE0000053, Op.FmvXW, Format.Fp),
        new(F7F3, 0xA0002053, Op.FeqS, Format.Fp),
        new(F7F3, 0xA0001053, Op.FltS, Format.Fp),
        new(F7F3, 0xA0000053, Op.FleS, Format.Fp),
        new(F7Rs2F3, 0xE0001053, Op.FclassS, Format.Fp),
        new(F7Rs2, 0xD0000053, Op.FcvtSW, Format.Fp),
        new(F7Rs2, 0xD0100053, Op.FcvtSWu, Format.Fp),
        new(F7Rs2, 0xD0200053, Op.FcvtSL, Format.Fp),
        new(F7Rs2, 0xD0300053, Op.FcvtSLu, Format.Fp),
        new(F7Rs2F3, 0xF0000053, Op.FmvWX, Format.Fp),
        new(Fma, 0x00000043, Op.FmaddS, Format.Fp),
        new(Fma, 0x00000047, Op.FmsubS, Format.Fp),
        new(Fma, 0x0000004B, Op.FnmsubS, Format.Fp),
        new(Fma, 0x0000004F, Op.FnmaddS, Format.Fp),

        // D (fmt = D)
        new(F7, 0x02000053, Op.FaddD, Format.Fp),
        new(F7, 0x0A000053, Op.FsubD, Format.Fp),
        new(F7, 0x12000053, Op.FmulD, Format.Fp),
        new(F7, 0x1A000053, Op.FdivD, Format.Fp),
        new(F7Rs2, 0x5A000053, Op.FsqrtD, Format.Fp),
        new(F7F3, 0x22000053, Op.FsgnjD, Format.Fp),
        new(F7F3, 0x22001053, Op.FsgnjnD, Format.Fp),
        new(F7F3, 0x22002053, Op.FsgnjxD, Format.Fp),
        new(F7F3, 0x2A000053, Op.FminD, Format.Fp),
        new(F7F3, 0x2A001053, Op.FmaxD, Format.Fp),
        new(F7Rs2, 0xC2000053, Op.FcvtWD, Format.Fp),
        new(F7Rs2, 0xC2100053, Op.FcvtWuD, Format.Fp),
        new(F7Rs2, 0xC2200053, Op.FcvtLD, Format.Fp),
        new(F7Rs2, 0xC2300053, Op.FcvtLuD, Format.Fp),
        new(F7Rs2F3, 0xE2000053, Op.FmvXD, Format.Fp),
        new(F7F3, 0xA2002053, Op.FeqD, Format.Fp),
        new(F7F3, 0xA2001053, Op.FltD, Format.Fp),
        new(F7F3, 0xA2000053, Op.FleD, Format.Fp),
        new(F7Rs2F3, 0xE2001053, Op.FclassD, Format.Fp),
        new(F7Rs2, 0xD2000053, Op.FcvtDW, Format.Fp),
        new(F7Rs2, 0xD2100053, Op.FcvtDWu, Format.Fp),
        new(F7Rs2, 0xD2200053, Op.FcvtDL, Format.Fp),
        new(F7Rs2, 0xD2300053, Op.FcvtDLu, Format.Fp),
        new(F7Rs2F3, 0xF2000053, Op.FmvDX, Format.Fp),
        new(Fma, 0x02000043, Op.FmaddD, Format.Fp),
        new(Fma, 0x02000047, Op.FmsubD, Format.Fp),
        new(Fma, 0x0200004B, Op.FnmsubD, Format.Fp),
        new(Fma, 0x0200004F, Op.FnmaddD, Format.Fp),
        new(F7Rs2, 0x40100053, Op.FcvtSD, Format.Fp),
        new(F7Rs2, 0x42000053, Op.FcvtDS, Format.Fp),
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
            Format.Fp => (int)((raw >> 27) & 0x1F) | (int)(((raw >> 12) & 7) << 8),
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
