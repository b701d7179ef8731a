namespace Ferry.Machine.Tests.Support;

/// <summary>Integer register numbers (ABI names).</summary>
internal static class R
{
    public const int Zero = 0, Ra = 1, Sp = 2, Gp = 3, Tp = 4, T0 = 5, T1 = 6, T2 = 7, S0 = 8, S1 = 9;
    public const int A0 = 10, A1 = 11, A2 = 12, A3 = 13, A4 = 14, A5 = 15, A6 = 16, A7 = 17;
    public const int S2 = 18, S3 = 19, S4 = 20, S5 = 21, S6 = 22, S7 = 23, S8 = 24, S9 = 25, S10 = 26, S11 = 27;
    public const int T3 = 28, T4 = 29, T5 = 30, T6 = 31;
}

/// <summary>
/// A tiny RV64IMAC + Zicsr + Zifencei + privileged encoder: one method per instruction, returning
/// the instruction bits (uint for 32-bit encodings, ushort for RVC). Written from the ISA manual's
/// encoding tables, independently of the machine's decoder.
/// </summary>
internal static class Asm
{
    // ---- formats

    public static uint RType(uint opcode, int funct3, uint funct7, int rd, int rs1, int rs2)
        => opcode | ((uint)rd << 7) | ((uint)funct3 << 12) | ((uint)rs1 << 15) | ((uint)rs2 << 20) | (funct7 << 25);

    public static uint IType(uint opcode, int funct3, int rd, int rs1, int imm)
    {
        CheckSigned(imm, 12);
        return opcode | ((uint)rd << 7) | ((uint)funct3 << 12) | ((uint)rs1 << 15) | ((uint)(imm & 0xFFF) << 20);
    }

    public static uint SType(uint opcode, int funct3, int rs1, int rs2, int imm)
    {
        CheckSigned(imm, 12);
        uint u = (uint)imm;
        return opcode | ((u & 0x1F) << 7) | ((uint)funct3 << 12) | ((uint)rs1 << 15) | ((uint)rs2 << 20) | (((u >> 5) & 0x7F) << 25);
    }

    public static uint BType(int funct3, int rs1, int rs2, int offset)
    {
        CheckSigned(offset, 13);
        CheckEven(offset);
        uint u = (uint)offset;
        return 0x63 | (((u >> 11) & 1) << 7) | (((u >> 1) & 0xF) << 8) | ((uint)funct3 << 12) | ((uint)rs1 << 15) | ((uint)rs2 << 20)
            | (((u >> 5) & 0x3F) << 25) | (((u >> 12) & 1) << 31);
    }

    public static uint UType(uint opcode, int rd, int imm20) => opcode | ((uint)rd << 7) | ((uint)(imm20 & 0xFFFFF) << 12);

    public static uint JType(int rd, int offset)
    {
        CheckSigned(offset, 21);
        CheckEven(offset);
        uint u = (uint)offset;
        return 0x6F | ((uint)rd << 7) | (((u >> 12) & 0xFF) << 12) | (((u >> 11) & 1) << 20) | (((u >> 1) & 0x3FF) << 21) | (((u >> 20) & 1) << 31);
    }

    // ---- RV64I

    /// <summary>rd = imm20 &lt;&lt; 12 (sign-extended).</summary>
    public static uint Lui(int rd, int imm20) => UType(0x37, rd, imm20);

    public static uint Auipc(int rd, int imm20) => UType(0x17, rd, imm20);

    public static uint Jal(int rd, int offset) => JType(rd, offset);

    public static uint Jalr(int rd, int rs1, int imm) => IType(0x67, 0, rd, rs1, imm);

    public static uint Beq(int rs1, int rs2, int offset) => BType(0, rs1, rs2, offset);

    public static uint Bne(int rs1, int rs2, int offset) => BType(1, rs1, rs2, offset);

    public static uint Blt(int rs1, int rs2, int offset) => BType(4, rs1, rs2, offset);

    public static uint Bge(int rs1, int rs2, int offset) => BType(5, rs1, rs2, offset);

    public static uint Bltu(int rs1, int rs2, int offset) => BType(6, rs1, rs2, offset);

    public static uint Bgeu(int rs1, int rs2, int offset) => BType(7, rs1, rs2, offset);

    public static uint Lb(int rd, int rs1, int imm) => IType(0x03, 0, rd, rs1, imm);

    public static uint Lh(int rd, int rs1, int imm) => IType(0x03, 1, rd, rs1, imm);

    public static uint Lw(int rd, int rs1, int imm) => IType(0x03, 2, rd, rs1, imm);

    public static uint Ld(int rd, int rs1, int imm) => IType(0x03, 3, rd, rs1, imm);

    public static uint Lbu(int rd, int rs1, int imm) => IType(0x03, 4, rd, rs1, imm);

    public static uint Lhu(int rd, int rs1, int imm) => IType(0x03, 5, rd, rs1, imm);

    public static uint Lwu(int rd, int rs1, int imm) => IType(0x03, 6, rd, rs1, imm);

    public static uint Sb(int rs2, int rs1, int imm) => SType(0x23, 0, rs1, rs2, imm);

    public static uint Sh(int rs2, int rs1, int imm) => SType(0x23, 1, rs1, rs2, imm);

    public static uint Sw(int rs2, int rs1, int imm) => SType(0x23, 2, rs1, rs2, imm);

    public static uint Sd(int rs2, int rs1, int imm) => SType(0x23, 3, rs1, rs2, imm);

    public static uint Addi(int rd, int rs1, int imm) => IType(0x13, 0, rd, rs1, imm);

    public static uint Slti(int rd, int rs1, int imm) => IType(0x13, 2, rd, rs1, imm);

    public static uint Sltiu(int rd, int rs1, int imm) => IType(0x13, 3, rd, rs1, imm);

    public static uint Xori(int rd, int rs1, int imm) => IType(0x13, 4, rd, rs1, imm);

    public static uint Ori(int rd, int rs1, int imm) => IType(0x13, 6, rd, rs1, imm);

    public static uint Andi(int rd, int rs1, int imm) => IType(0x13, 7, rd, rs1, imm);

    public static uint Slli(int rd, int rs1, int shamt) => Shift(0x13, 1, 0, rd, rs1, shamt, 63);

    public static uint Srli(int rd, int rs1, int shamt) => Shift(0x13, 5, 0, rd, rs1, shamt, 63);

    public static uint Srai(int rd, int rs1, int shamt) => Shift(0x13, 5, 0x10, rd, rs1, shamt, 63);

    public static uint Addiw(int rd, int rs1, int imm) => IType(0x1B, 0, rd, rs1, imm);

    public static uint Slliw(int rd, int rs1, int shamt) => Shift(0x1B, 1, 0, rd, rs1, shamt, 31);

    public static uint Srliw(int rd, int rs1, int shamt) => Shift(0x1B, 5, 0, rd, rs1, shamt, 31);

    public static uint Sraiw(int rd, int rs1, int shamt) => Shift(0x1B, 5, 0x10, rd, rs1, shamt, 31);

    public static uint Add(int rd, int rs1, int rs2) => RType(0x33, 0, 0, rd, rs1, rs2);

    public static uint Sub(int rd, int rs1, int rs2) => RType(0x33, 0, 0x20, rd, rs1, rs2);

    public static uint Sll(int rd, int rs1, int rs2) => RType(0x33, 1, 0, rd, rs1, rs2);

    public static uint Slt(int rd, int rs1, int rs2) => RType(0x33, 2, 0, rd, rs1, rs2);

    public static uint Sltu(int rd, int rs1, int rs2) => RType(0x33, 3, 0, rd, rs1, rs2);

    public static uint Xor(int rd, int rs1, int rs2) => RType(0x33, 4, 0, rd, rs1, rs2);

    public static uint Srl(int rd, int rs1, int rs2) => RType(0x33, 5, 0, rd, rs1, rs2);

    public static uint Sra(int rd, int rs1, int rs2) => RType(0x33, 5, 0x20, rd, rs1, rs2);

    public static uint Or(int rd, int rs1, int rs2) => RType(0x33, 6, 0, rd, rs1, rs2);

    public static uint And(int rd, int rs1, int rs2) => RType(0x33, 7, 0, rd, rs1, rs2);

    public static uint Addw(int rd, int rs1, int rs2) => RType(0x3B, 0, 0, rd, rs1, rs2);

    public static uint Subw(int rd, int rs1, int rs2) => RType(0x3B, 0, 0x20, rd, rs1, rs2);

    public static uint Sllw(int rd, int rs1, int rs2) => RType(0x3B, 1, 0, rd, rs1, rs2);

    public static uint Srlw(int rd, int rs1, int rs2) => RType(0x3B, 5, 0, rd, rs1, rs2);

    public static uint Sraw(int rd, int rs1, int rs2) => RType(0x3B, 5, 0x20, rd, rs1, rs2);

    public static uint Fence() => 0x0FF0_000F; // fence iorw, iorw

    public static uint Ecall() => 0x0000_0073;

    public static uint Ebreak() => 0x0010_0073;

    public static uint Nop() => Addi(0, 0, 0);

    // ---- Zifencei

    public static uint FenceI() => 0x0000_100F;

    // ---- M

    public static uint Mul(int rd, int rs1, int rs2) => RType(0x33, 0, 1, rd, rs1, rs2);

    public static uint Mulh(int rd, int rs1, int rs2) => RType(0x33, 1, 1, rd, rs1, rs2);

    public static uint Mulhsu(int rd, int rs1, int rs2) => RType(0x33, 2, 1, rd, rs1, rs2);

    public static uint Mulhu(int rd, int rs1, int rs2) => RType(0x33, 3, 1, rd, rs1, rs2);

    public static uint Div(int rd, int rs1, int rs2) => RType(0x33, 4, 1, rd, rs1, rs2);

    public static uint Divu(int rd, int rs1, int rs2) => RType(0x33, 5, 1, rd, rs1, rs2);

    public static uint Rem(int rd, int rs1, int rs2) => RType(0x33, 6, 1, rd, rs1, rs2);

    public static uint Remu(int rd, int rs1, int rs2) => RType(0x33, 7, 1, rd, rs1, rs2);

    public static uint Mulw(int rd, int rs1, int rs2) => RType(0x3B, 0, 1, rd, rs1, rs2);

    public static uint Divw(int rd, int rs1, int rs2) => RType(0x3B, 4, 1, rd, rs1, rs2);

    public static uint Divuw(int rd, int rs1, int rs2) => RType(0x3B, 5, 1, rd, rs1, rs2);

    public static uint Remw(int rd, int rs1, int rs2) => RType(0x3B, 6, 1, rd, rs1, rs2);

    public static uint Remuw(int rd, int rs1, int rs2) => RType(0x3B, 7, 1, rd, rs1, rs2);

    // ---- A (funct5 values of the ISA manual)

    public const int AmoAdd = 0x00, AmoSwap = 0x01, Lr = 0x02, Sc = 0x03, AmoXor = 0x04, AmoOr = 0x08, AmoAnd = 0x0C;
    public const int AmoMin = 0x10, AmoMax = 0x14, AmoMinu = 0x18, AmoMaxu = 0x1C;

    /// <summary>An A-extension instruction; <paramref name="doubleword"/> selects .D (funct3 3) over .W (funct3 2).</summary>
    public static uint Amo(int funct5, bool doubleword, int rd, int rs1, int rs2, bool aq = false, bool rl = false)
        => RType(0x2F, doubleword ? 3 : 2, ((uint)funct5 << 2) | (aq ? 2u : 0) | (rl ? 1u : 0), rd, rs1, rs2);

    public static uint LrW(int rd, int rs1) => Amo(Lr, false, rd, rs1, 0);

    public static uint LrD(int rd, int rs1) => Amo(Lr, true, rd, rs1, 0);

    public static uint ScW(int rd, int rs2, int rs1) => Amo(Sc, false, rd, rs1, rs2);

    public static uint ScD(int rd, int rs2, int rs1) => Amo(Sc, true, rd, rs1, rs2);

    // ---- Zicsr

    public static uint Csrrw(int rd, int csr, int rs1) => Csr(1, rd, csr, rs1);

    public static uint Csrrs(int rd, int csr, int rs1) => Csr(2, rd, csr, rs1);

    public static uint Csrrc(int rd, int csr, int rs1) => Csr(3, rd, csr, rs1);

    public static uint Csrrwi(int rd, int csr, int uimm) => Csr(5, rd, csr, uimm);

    public static uint Csrrsi(int rd, int csr, int uimm) => Csr(6, rd, csr, uimm);

    public static uint Csrrci(int rd, int csr, int uimm) => Csr(7, rd, csr, uimm);

    public static uint Csrr(int rd, int csr) => Csrrs(rd, csr, 0);

    public static uint Csrw(int csr, int rs1) => Csrrw(0, csr, rs1);

    public static uint Csrs(int csr, int rs1) => Csrrs(0, csr, rs1);

    public static uint Csrc(int csr, int rs1) => Csrrc(0, csr, rs1);

    // ---- privileged

    public static uint Mret() => 0x3020_0073;

    public static uint Sret() => 0x1020_0073;

    public static uint Wfi() => 0x1050_0073;

    public static uint SfenceVma(int rs1 = 0, int rs2 = 0) => RType(0x73, 0, 0x09, 0, rs1, rs2);

    // ---- C (RV64 encodings). r' registers are x8..x15.

    public static ushort CAddi4spn(int rdP, int nzuimm)
    {
        CheckRange(nzuimm, 0, 1020);
        CheckMultiple(nzuimm, 4);
        int u = nzuimm;
        return C(0, 0, (((u >> 4) & 3) << 11) | (((u >> 6) & 0xF) << 7) | (((u >> 2) & 1) << 6) | (((u >> 3) & 1) << 5) | (Rp(rdP) << 2));
    }

    public static ushort CLw(int rdP, int rs1P, int uimm)
    {
        CheckRange(uimm, 0, 124);
        CheckMultiple(uimm, 4);
        return C(0, 2, (((uimm >> 3) & 7) << 10) | (Rp(rs1P) << 7) | (((uimm >> 2) & 1) << 6) | (((uimm >> 6) & 1) << 5) | (Rp(rdP) << 2));
    }

    public static ushort CLd(int rdP, int rs1P, int uimm)
    {
        CheckRange(uimm, 0, 248);
        CheckMultiple(uimm, 8);
        return C(0, 3, (((uimm >> 3) & 7) << 10) | (Rp(rs1P) << 7) | (((uimm >> 6) & 3) << 5) | (Rp(rdP) << 2));
    }

    public static ushort CSw(int rs2P, int rs1P, int uimm)
    {
        CheckRange(uimm, 0, 124);
        CheckMultiple(uimm, 4);
        return C(0, 6, (((uimm >> 3) & 7) << 10) | (Rp(rs1P) << 7) | (((uimm >> 2) & 1) << 6) | (((uimm >> 6) & 1) << 5) | (Rp(rs2P) << 2));
    }

    public static ushort CSd(int rs2P, int rs1P, int uimm)
    {
        CheckRange(uimm, 0, 248);
        CheckMultiple(uimm, 8);
        return C(0, 7, (((uimm >> 3) & 7) << 10) | (Rp(rs1P) << 7) | (((uimm >> 6) & 3) << 5) | (Rp(rs2P) << 2));
    }

    public static ushort CNop() => C(1, 0, 0);

    public static ushort CAddi(int rd, int imm) => CI(1, 0, rd, imm);

    public static ushort CAddiw(int rd, int imm) => CI(1, 1, rd, imm);

    public static ushort CLi(int rd, int imm) => CI(1, 2, rd, imm);

    public static ushort CAddi16sp(int imm)
    {
        CheckRange(imm, -512, 496);
        CheckMultiple(imm, 16);
        int u = imm;
        return C(1, 3, (((u >> 9) & 1) << 12) | (2 << 7) | (((u >> 4) & 1) << 6) | (((u >> 6) & 1) << 5) | (((u >> 7) & 3) << 3) | (((u >> 5) & 1) << 2));
    }

    /// <summary>c.lui rd, imm6: rd = sext(imm6) &lt;&lt; 12.</summary>
    public static ushort CLui(int rd, int imm6) => CI(1, 3, rd, imm6);

    public static ushort CSrli(int rdP, int shamt) => CShift(0, rdP, shamt);

    public static ushort CSrai(int rdP, int shamt) => CShift(1, rdP, shamt);

    public static ushort CAndi(int rdP, int imm)
    {
        CheckRange(imm, -32, 31);
        return C(1, 4, (((imm >> 5) & 1) << 12) | (2 << 10) | (Rp(rdP) << 7) | ((imm & 31) << 2));
    }

    public static ushort CSub(int rdP, int rs2P) => CA(0, 0, rdP, rs2P);

    public static ushort CXor(int rdP, int rs2P) => CA(0, 1, rdP, rs2P);

    public static ushort COr(int rdP, int rs2P) => CA(0, 2, rdP, rs2P);

    public static ushort CAnd(int rdP, int rs2P) => CA(0, 3, rdP, rs2P);

    public static ushort CSubw(int rdP, int rs2P) => CA(1, 0, rdP, rs2P);

    public static ushort CAddw(int rdP, int rs2P) => CA(1, 1, rdP, rs2P);

    public static ushort CJ(int offset)
    {
        CheckRange(offset, -2048, 2046);
        CheckEven(offset);
        int u = offset;
        return C(1, 5, (((u >> 11) & 1) << 12) | (((u >> 4) & 1) << 11) | (((u >> 8) & 3) << 9) | (((u >> 10) & 1) << 8)
            | (((u >> 6) & 1) << 7) | (((u >> 7) & 1) << 6) | (((u >> 1) & 7) << 3) | (((u >> 5) & 1) << 2));
    }

    public static ushort CBeqz(int rs1P, int offset) => CB(6, rs1P, offset);

    public static ushort CBnez(int rs1P, int offset) => CB(7, rs1P, offset);

    public static ushort CSlli(int rd, int shamt)
    {
        CheckRange(shamt, 0, 63);
        return C(2, 0, (((shamt >> 5) & 1) << 12) | (rd << 7) | ((shamt & 31) << 2));
    }

    public static ushort CLwsp(int rd, int uimm)
    {
        CheckRange(uimm, 0, 252);
        CheckMultiple(uimm, 4);
        return C(2, 2, (((uimm >> 5) & 1) << 12) | (rd << 7) | (((uimm >> 2) & 7) << 4) | (((uimm >> 6) & 3) << 2));
    }

    public static ushort CLdsp(int rd, int uimm)
    {
        CheckRange(uimm, 0, 504);
        CheckMultiple(uimm, 8);
        return C(2, 3, (((uimm >> 5) & 1) << 12) | (rd << 7) | (((uimm >> 3) & 3) << 5) | (((uimm >> 6) & 7) << 2));
    }

    public static ushort CJr(int rs1) => C(2, 4, (rs1 << 7));

    public static ushort CMv(int rd, int rs2) => C(2, 4, (rd << 7) | (rs2 << 2));

    public static ushort CEbreak() => C(2, 4, 1 << 12);

    public static ushort CJalr(int rs1) => C(2, 4, (1 << 12) | (rs1 << 7));

    public static ushort CAdd(int rd, int rs2) => C(2, 4, (1 << 12) | (rd << 7) | (rs2 << 2));

    public static ushort CSwsp(int rs2, int uimm)
    {
        CheckRange(uimm, 0, 252);
        CheckMultiple(uimm, 4);
        return C(2, 6, (((uimm >> 2) & 0xF) << 9) | (((uimm >> 6) & 3) << 7) | (rs2 << 2));
    }

    public static ushort CSdsp(int rs2, int uimm)
    {
        CheckRange(uimm, 0, 504);
        CheckMultiple(uimm, 8);
        return C(2, 7, (((uimm >> 3) & 7) << 10) | (((uimm >> 6) & 7) << 7) | (rs2 << 2));
    }

    // ---- helpers

    private static uint Shift(uint opcode, int funct3, uint funct6, int rd, int rs1, int shamt, int max)
    {
        CheckRange(shamt, 0, max);
        return opcode | ((uint)rd << 7) | ((uint)funct3 << 12) | ((uint)rs1 << 15) | ((uint)shamt << 20) | (funct6 << 26);
    }

    private static uint Csr(int funct3, int rd, int csr, int rs1)
    {
        CheckRange(csr, 0, 0xFFF);
        return 0x73 | ((uint)rd << 7) | ((uint)funct3 << 12) | ((uint)rs1 << 15) | ((uint)csr << 20);
    }

    private static ushort C(int quadrant, int funct3, int rest) => (ushort)(quadrant | (funct3 << 13) | rest);

    private static ushort CI(int quadrant, int funct3, int rd, int imm)
    {
        CheckRange(imm, -32, 31);
        return C(quadrant, funct3, (((imm >> 5) & 1) << 12) | (rd << 7) | ((imm & 31) << 2));
    }

    private static ushort CShift(int kind, int rdP, int shamt)
    {
        CheckRange(shamt, 0, 63);
        return C(1, 4, (((shamt >> 5) & 1) << 12) | (kind << 10) | (Rp(rdP) << 7) | ((shamt & 31) << 2));
    }

    private static ushort CA(int word, int funct2, int rdP, int rs2P)
        => C(1, 4, (word << 12) | (3 << 10) | (Rp(rdP) << 7) | (funct2 << 5) | (Rp(rs2P) << 2));

    private static ushort CB(int funct3, int rs1P, int offset)
    {
        CheckRange(offset, -256, 254);
        CheckEven(offset);
        int u = offset;
        return C(1, funct3, (((u >> 8) & 1) << 12) | (((u >> 3) & 3) << 10) | (Rp(rs1P) << 7) | (((u >> 6) & 3) << 5) | (((u >> 1) & 3) << 3) | (((u >> 5) & 1) << 2));
    }

    private static int Rp(int reg)
    {
        if (reg is < 8 or > 15)
        {
            throw new ArgumentOutOfRangeException(nameof(reg), reg, "compressed register must be x8..x15");
        }

        return reg - 8;
    }

    private static void CheckSigned(int value, int bits)
    {
        int min = -(1 << (bits - 1)), max = (1 << (bits - 1)) - 1;
        CheckRange(value, min, max);
    }

    private static void CheckRange(int value, int min, int max)
    {
        if (value < min || value > max)
        {
            throw new ArgumentOutOfRangeException(nameof(value), value, $"must be in [{min}, {max}]");
        }
    }

    private static void CheckEven(int value) => CheckMultiple(value, 2);

    private static void CheckMultiple(int value, int of)
    {
        if (value % of != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(value), value, $"must be a multiple of {of}");
        }
    }
}
