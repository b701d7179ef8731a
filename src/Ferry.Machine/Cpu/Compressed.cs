namespace Ferry.Machine.Cpu;

/// <summary>
/// RVC (the C extension, RV64 encodings): expands each 16-bit instruction to the operation of
/// its 32-bit equivalent. Reserved encodings are illegal; of the FP forms RV64 has only the D
/// ones (c.fld, c.fsd, c.fldsp, c.fsdsp), whose rd/rs2 name f registers.
/// </summary>
internal static class Compressed
{
    public static DecodedInsn Expand(ushort c)
    {
        uint raw = c;
        int quadrant = c & 3;
        int funct3 = c >> 13;
        int rdFull = (c >> 7) & 31;       // rd/rs1 in CR/CI formats
        int rs2Full = (c >> 2) & 31;      // rs2 in CR/CSS formats
        int rdP = 8 + ((c >> 2) & 7);     // rd' (CIW, CL) / rs2' (CS)
        int rs1P = 8 + ((c >> 7) & 7);    // rs1' (CL, CS, CB) / rd' (CA, CB)
        int ciImm = SignExtend(((c >> 12) & 1) << 5 | ((c >> 2) & 31), 6);

        switch (quadrant)
        {
            case 0:
                switch (funct3)
                {
                    case 0: // c.addi4spn
                    {
                        int imm = (((c >> 11) & 3) << 4) | (((c >> 7) & 0xF) << 6) | (((c >> 6) & 1) << 2) | (((c >> 5) & 1) << 3);
                        return imm == 0 ? Illegal(raw) : Make(Op.Addi, rdP, 2, 0, imm, raw);
                    }

                    case 1: // c.fld
                        return Make(Op.Fld, rdP, rs1P, 0, LdOffset(c), raw);
                    case 2: // c.lw
                        return Make(Op.Lw, rdP, rs1P, 0, LwOffset(c), raw);
                    case 3: // c.ld
                        return Make(Op.Ld, rdP, rs1P, 0, LdOffset(c), raw);
                    case 5: // c.fsd
                        return Make(Op.Fsd, 0, rs1P, rdP, LdOffset(c), raw);
                    case 6: // c.sw
                        return Make(Op.Sw, 0, rs1P, rdP, LwOffset(c), raw);
                    case 7: // c.sd
                        return Make(Op.Sd, 0, rs1P, rdP, LdOffset(c), raw);
                    default: // reserved
                        return Illegal(raw);
                }

            case 1:
                switch (funct3)
                {
                    case 0: // c.addi (c.nop when rd = 0)
                        return Make(Op.Addi, rdFull, rdFull, 0, ciImm, raw);
                    case 1: // c.addiw
                        return rdFull == 0 ? Illegal(raw) : Make(Op.Addiw, rdFull, rdFull, 0, ciImm, raw);
                    case 2: // c.li
                        return Make(Op.Addi, rdFull, 0, 0, ciImm, raw);
                    case 3:
                        if (rdFull == 2)
                        {
                            // c.addi16sp
                            int imm = SignExtend((((c >> 12) & 1) << 9) | (((c >> 6) & 1) << 4) | (((c >> 5) & 1) << 6) | (((c >> 3) & 3) << 7) | (((c >> 2) & 1) << 5), 10);
                            return imm == 0 ? Illegal(raw) : Make(Op.Addi, 2, 2, 0, imm, raw);
                        }
                        else
                        {
                            // c.lui
                            return ciImm == 0 ? Illegal(raw) : Make(Op.Lui, rdFull, 0, 0, ciImm << 12, raw);
                        }

                    case 4:
                    {
                        int shamt = ((c >> 12) & 1) << 5 | ((c >> 2) & 31);
                        switch ((c >> 10) & 3)
                        {
                            case 0: return Make(Op.Srli, rs1P, rs1P, 0, shamt, raw);
                            case 1: return Make(Op.Srai, rs1P, rs1P, 0, shamt, raw);
                            case 2: return Make(Op.Andi, rs1P, rs1P, 0, ciImm, raw);
                        }

                        int rs2P = rdP;
                        bool word = ((c >> 12) & 1) != 0;
                        return ((c >> 5) & 3, word) switch
                        {
                            (0, false) => Make(Op.Sub, rs1P, rs1P, rs2P, 0, raw),
                            (1, false) => Make(Op.Xor, rs1P, rs1P, rs2P, 0, raw),
                            (2, false) => Make(Op.Or, rs1P, rs1P, rs2P, 0, raw),
                            (3, false) => Make(Op.And, rs1P, rs1P, rs2P, 0, raw),
                            (0, true) => Make(Op.Subw, rs1P, rs1P, rs2P, 0, raw),
                            (1, true) => Make(Op.Addw, rs1P, rs1P, rs2P, 0, raw),
                            _ => Illegal(raw),
                        };
                    }

                    case 5: // c.j
                    {
                        int imm = SignExtend(
                            (((c >> 12) & 1) << 11) | (((c >> 11) & 1) << 4) | (((c >> 9) & 3) << 8) | (((c >> 8) & 1) << 10) |
                            (((c >> 7) & 1) << 6) | (((c >> 6) & 1) << 7) | (((c >> 3) & 7) << 1) | (((c >> 2) & 1) << 5), 12);
                        return Make(Op.Jal, 0, 0, 0, imm, raw);
                    }

                    default: // c.beqz, c.bnez
                    {
                        int imm = SignExtend(
                            (((c >> 12) & 1) << 8) | (((c >> 10) & 3) << 3) | (((c >> 5) & 3) << 6) | (((c >> 3) & 3) << 1) | (((c >> 2) & 1) << 5), 9);
                        return Make(funct3 == 6 ? Op.Beq : Op.Bne, 0, rs1P, 0, imm, raw);
                    }
                }

            case 2:
                switch (funct3)
                {
                    case 0: // c.slli
                        return Make(Op.Slli, rdFull, rdFull, 0, ((c >> 12) & 1) << 5 | ((c >> 2) & 31), raw);
                    case 1: // c.fldsp (f0 is a valid destination)
                        return Make(Op.Fld, rdFull, 2, 0, (((c >> 12) & 1) << 5) | (((c >> 5) & 3) << 3) | (((c >> 2) & 7) << 6), raw);
                    case 2: // c.lwsp
                    {
                        int imm = (((c >> 12) & 1) << 5) | (((c >> 4) & 7) << 2) | (((c >> 2) & 3) << 6);
                        return rdFull == 0 ? Illegal(raw) : Make(Op.Lw, rdFull, 2, 0, imm, raw);
                    }

                    case 3: // c.ldsp
                    {
                        int imm = (((c >> 12) & 1) << 5) | (((c >> 5) & 3) << 3) | (((c >> 2) & 7) << 6);
                        return rdFull == 0 ? Illegal(raw) : Make(Op.Ld, rdFull, 2, 0, imm, raw);
                    }

                    case 4:
                        if (((c >> 12) & 1) == 0)
                        {
                            if (rs2Full == 0)
                            {
                                // c.jr
                                return rdFull == 0 ? Illegal(raw) : Make(Op.Jalr, 0, rdFull, 0, 0, raw);
                            }

                            // c.mv
                            return Make(Op.Add, rdFull, 0, rs2Full, 0, raw);
                        }

                        if (rs2Full == 0)
                        {
                            // c.ebreak / c.jalr
                            return rdFull == 0 ? Make(Op.Ebreak, 0, 0, 0, 0, raw) : Make(Op.Jalr, 1, rdFull, 0, 0, raw);
                        }

                        // c.add
                        return Make(Op.Add, rdFull, rdFull, rs2Full, 0, raw);
                    case 6: // c.swsp
                        return Make(Op.Sw, 0, 2, rs2Full, (((c >> 9) & 0xF) << 2) | (((c >> 7) & 3) << 6), raw);
                    case 5: // c.fsdsp
                        return Make(Op.Fsd, 0, 2, rs2Full, (((c >> 10) & 7) << 3) | (((c >> 7) & 7) << 6), raw);
                    case 7: // c.sdsp
                        return Make(Op.Sd, 0, 2, rs2Full, (((c >> 10) & 7) << 3) | (((c >> 7) & 7) << 6), raw);
                    default:
                        return Illegal(raw);
                }

            default:
                return Illegal(raw);
        }
    }

    private static int LwOffset(int c) => (((c >> 10) & 7) << 3) | (((c >> 6) & 1) << 2) | (((c >> 5) & 1) << 6);

    private static int LdOffset(int c) => (((c >> 10) & 7) << 3) | (((c >> 5) & 3) << 6);

    private static int SignExtend(int value, int bits) => (value << (32 - bits)) >> (32 - bits);

    private static DecodedInsn Make(Op op, int rd, int rs1, int rs2, int imm, uint raw) => Decoder.Make(op, rd, rs1, rs2, imm, raw, 2);

    private static DecodedInsn Illegal(uint raw) => Decoder.Illegal(raw, 2);
}
