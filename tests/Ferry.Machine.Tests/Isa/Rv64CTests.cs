using CsCheck;
using Ferry.Machine.Tests.Support;

namespace Ferry.Machine.Tests.Isa;

public sealed class Rv64CTests : IDisposable
{
    private readonly InsnBench _bench = new();

    public void Dispose() => _bench.Dispose();

    private static readonly Gen<int> AnyRd = Gen.Int[1, 31];
    private static readonly Gen<int> Prime = Gen.Int[8, 15];
    private static readonly Gen<int> NonZeroImm6 = Gen.Int[-32, 31].Where(i => i != 0);

    /// <summary>Compressed instructions with random fields, each paired with its 32-bit expansion (ISA manual, chapter 16).</summary>
    private static readonly Gen<(string Name, ushort C, uint Expansion)> AluPairs = Gen.OneOf<(string, ushort, uint)>(
        Gen.Select(AnyRd, NonZeroImm6, (rd, imm) => ("c.addi", Asm.CAddi(rd, imm), Asm.Addi(rd, rd, imm))),
        Gen.Select(AnyRd, Gen.Int[-32, 31], (rd, imm) => ("c.addiw", Asm.CAddiw(rd, imm), Asm.Addiw(rd, rd, imm))),
        Gen.Select(AnyRd, Gen.Int[-32, 31], (rd, imm) => ("c.li", Asm.CLi(rd, imm), Asm.Addi(rd, 0, imm))),
        Gen.Select(AnyRd.Where(r => r != 2), NonZeroImm6, (rd, imm) => ("c.lui", Asm.CLui(rd, imm), Asm.Lui(rd, imm))),
        Gen.Int[-32, 31].Where(i => i != 0).Select(i => ("c.addi16sp", Asm.CAddi16sp(i * 16), Asm.Addi(2, 2, i * 16))),
        Gen.Select(Prime, Gen.Int[1, 255], (rd, i) => ("c.addi4spn", Asm.CAddi4spn(rd, i * 4), Asm.Addi(rd, 2, i * 4))),
        Gen.Select(Prime, Gen.Int[1, 63], (rd, s) => ("c.srli", Asm.CSrli(rd, s), Asm.Srli(rd, rd, s))),
        Gen.Select(Prime, Gen.Int[1, 63], (rd, s) => ("c.srai", Asm.CSrai(rd, s), Asm.Srai(rd, rd, s))),
        Gen.Select(Prime, Gen.Int[-32, 31], (rd, imm) => ("c.andi", Asm.CAndi(rd, imm), Asm.Andi(rd, rd, imm))),
        Gen.Select(Prime, Prime, (rd, rs) => ("c.sub", Asm.CSub(rd, rs), Asm.Sub(rd, rd, rs))),
        Gen.Select(Prime, Prime, (rd, rs) => ("c.xor", Asm.CXor(rd, rs), Asm.Xor(rd, rd, rs))),
        Gen.Select(Prime, Prime, (rd, rs) => ("c.or", Asm.COr(rd, rs), Asm.Or(rd, rd, rs))),
        Gen.Select(Prime, Prime, (rd, rs) => ("c.and", Asm.CAnd(rd, rs), Asm.And(rd, rd, rs))),
        Gen.Select(Prime, Prime, (rd, rs) => ("c.subw", Asm.CSubw(rd, rs), Asm.Subw(rd, rd, rs))),
        Gen.Select(Prime, Prime, (rd, rs) => ("c.addw", Asm.CAddw(rd, rs), Asm.Addw(rd, rd, rs))),
        Gen.Select(AnyRd, Gen.Int[1, 63], (rd, s) => ("c.slli", Asm.CSlli(rd, s), Asm.Slli(rd, rd, s))),
        Gen.Select(AnyRd, Gen.Int[1, 31], (rd, rs) => ("c.mv", Asm.CMv(rd, rs), Asm.Add(rd, 0, rs))),
        Gen.Select(AnyRd, Gen.Int[1, 31], (rd, rs) => ("c.add", Asm.CAdd(rd, rs), Asm.Add(rd, rd, rs))));

    [Fact]
    public void CompressedAluOps_MatchTheir32BitExpansions()
    {
        Gen.Select(AluPairs, Gen.ULong.Array[31]).Sample((pair, registers) =>
        {
            ulong[] viaC = RunWith(registers, () => _bench.ExecC(pair.C));
            ulong[] via32 = RunWith(registers, () => _bench.Step(pair.Expansion));
            Assert.True(via32.SequenceEqual(viaC), $"{pair.Name} 0x{pair.C:x4} differs from 0x{pair.Expansion:x8}");
        }, iter: 3000, threads: 1);
    }

    private ulong[] RunWith(ulong[] registers, Action step)
    {
        for (int r = 1; r < 32; r++)
        {
            _bench.Rig.SetX(r, registers[r - 1]);
        }

        step();
        return Enumerable.Range(0, 32).Select(r => _bench.Rig.X(r)).ToArray();
    }

    [Fact]
    public void Addi16sp_AddsScaledSignedImmediateToSp()
    {
        _bench.Rig.SetX(R.Sp, 0x8000_1000);
        _bench.ExecC(Asm.CAddi16sp(-512));
        Assert.Equal(0x8000_0E00UL, _bench.Rig.X(R.Sp));
        _bench.ExecC(Asm.CAddi16sp(496));
        Assert.Equal(0x8000_0FF0UL, _bench.Rig.X(R.Sp));
    }

    [Fact]
    public void Lui_SignExtendsItsSixBitImmediate()
    {
        _bench.ExecC(Asm.CLui(R.A0, -1));
        Assert.Equal(0xFFFF_FFFF_FFFF_F000UL, _bench.Rig.X(R.A0));
        _bench.ExecC(Asm.CLui(R.A0, 31));
        Assert.Equal(0x1F000UL, _bench.Rig.X(R.A0));
        _bench.ExecC(Asm.CLui(R.A0, -32));
        Assert.Equal(0xFFFF_FFFF_FFFE_0000UL, _bench.Rig.X(R.A0));
    }

    [Fact]
    public void ShiftsAndAndi()
    {
        _bench.Rig.SetX(R.S0, 0x8000_0000_0000_0010);
        _bench.ExecC(Asm.CSrai(R.S0, 4));
        Assert.Equal(0xF800_0000_0000_0001UL, _bench.Rig.X(R.S0));
        _bench.ExecC(Asm.CSrli(R.S0, 60));
        Assert.Equal(0xFUL, _bench.Rig.X(R.S0));
        _bench.Rig.SetX(R.S1, 0xFFFF_FFFF_FFFF_FFFF);
        _bench.ExecC(Asm.CAndi(R.S1, -16));
        Assert.Equal(0xFFFF_FFFF_FFFF_FFF0UL, _bench.Rig.X(R.S1));
        _bench.ExecC(Asm.CSlli(R.S1, 63));
        Assert.Equal(0UL, _bench.Rig.X(R.S1));
    }

    [Fact]
    public void StackPointerLoadsAndStores()
    {
        ulong sp = Rig.Data + 0x800;
        _bench.Rig.SetX(R.Sp, sp);
        _bench.Rig.WriteU64(sp + 504, 0x8877_6655_4433_2211);
        _bench.Rig.WriteU64(sp + 248, 0x0000_0000_9000_0001);
        _bench.ExecC(Asm.CLdsp(R.A0, 504));
        Assert.Equal(0x8877_6655_4433_2211UL, _bench.Rig.X(R.A0));
        _bench.ExecC(Asm.CLwsp(R.A1, 248));
        Assert.Equal(0xFFFF_FFFF_9000_0001UL, _bench.Rig.X(R.A1)); // c.lwsp sign-extends
        _bench.Rig.SetX(R.T3, 0x0102_0304_0506_0708);
        _bench.ExecC(Asm.CSdsp(R.T3, 8));
        Assert.Equal(0x0102_0304_0506_0708UL, _bench.Rig.ReadU64(sp + 8));
        _bench.ExecC(Asm.CSwsp(R.T3, 252));
        Assert.Equal(0x0506_0708U, _bench.Rig.ReadU32(sp + 252));
    }

    [Fact]
    public void RegisterBasedLoadsAndStores()
    {
        ulong b = Rig.Data + 0xC00;
        _bench.Rig.SetX(R.S1, b);
        _bench.Rig.WriteU64(b + 248, 0xCAFE_BABE_DEAD_BEEF);
        _bench.ExecC(Asm.CLd(R.A5, R.S1, 248));
        Assert.Equal(0xCAFE_BABE_DEAD_BEEFUL, _bench.Rig.X(R.A5));
        _bench.Rig.WriteU32(b + 124, 0x7654_3210);
        _bench.ExecC(Asm.CLw(R.A4, R.S1, 124));
        Assert.Equal(0x7654_3210UL, _bench.Rig.X(R.A4));
        _bench.Rig.WriteU32(b + 64, 0x8000_0000);
        _bench.ExecC(Asm.CLw(R.A4, R.S1, 64));
        Assert.Equal(0xFFFF_FFFF_8000_0000UL, _bench.Rig.X(R.A4));
        _bench.Rig.SetX(R.A3, 0x1122_3344_5566_7788);
        _bench.ExecC(Asm.CSd(R.A3, R.S1, 16));
        _bench.ExecC(Asm.CSw(R.A3, R.S1, 28));
        Assert.Equal(0x1122_3344_5566_7788UL, _bench.Rig.ReadU64(b + 16));
        Assert.Equal(0x5566_7788U, _bench.Rig.ReadU32(b + 28));
    }

    [Theory]
    [InlineData(-2048)]
    [InlineData(-2)]
    [InlineData(2)]
    [InlineData(2046)]
    [InlineData(0x554)]
    public void J_JumpsBySignedOffset(int offset)
    {
        ulong at = _bench.Place(Asm.CJ(offset), 2);
        Assert.Equal(at + (ulong)(long)offset, _bench.Step(Asm.CJ(offset), 2));
    }

    [Theory]
    [InlineData(0UL, -256, true, false)]
    [InlineData(5UL, -256, false, true)]
    [InlineData(0UL, 254, true, false)]
    [InlineData(0x8000_0000_0000_0000UL, 0xAA, false, true)]
    public void Beqz_Bnez(ulong value, int offset, bool beqzTaken, bool bnezTaken)
    {
        _bench.Rig.SetX(R.A2, value);
        ulong at = _bench.Place(Asm.CBeqz(R.A2, offset), 2);
        Assert.Equal(beqzTaken ? at + (ulong)(long)offset : at + 2, _bench.Step(Asm.CBeqz(R.A2, offset), 2));
        at = _bench.Place(Asm.CBnez(R.A2, offset), 2);
        Assert.Equal(bnezTaken ? at + (ulong)(long)offset : at + 2, _bench.Step(Asm.CBnez(R.A2, offset), 2));
    }

    [Fact]
    public void JrAndJalr_LinkPcPlus2()
    {
        ulong target = Rig.Code + 0x1234;
        _bench.Rig.SetX(R.A5, target).SetX(R.Ra, 0);
        ulong at = _bench.Place(Asm.CJalr(R.A5), 2);
        Assert.Equal(target, _bench.Step(Asm.CJalr(R.A5), 2));
        Assert.Equal(at + 2, _bench.Rig.X(R.Ra));
        _bench.Rig.SetX(R.Ra, target + 0x10);
        Assert.Equal(target + 0x10, _bench.Step(Asm.CJr(R.Ra), 2));
    }

    [Fact]
    public void Ebreak_IsABreakpoint()
    {
        var (cause, _, epc) = _bench.Trap(Asm.CEbreak(), 2);
        Assert.Equal(3UL, cause);
        Assert.Equal(_bench.Place(Asm.CEbreak(), 2), epc);
    }

    [Theory]
    [InlineData((ushort)0x0000)] // all zeros (c.addi4spn with imm 0)
    [InlineData((ushort)0x0004)] // c.addi4spn s1, 0
    [InlineData((ushort)0x6101)] // c.addi16sp 0
    [InlineData((ushort)0x6501)] // c.lui a0, 0
    [InlineData((ushort)0x4002)] // c.lwsp x0
    [InlineData((ushort)0x6002)] // c.ldsp x0
    [InlineData((ushort)0x8002)] // c.jr x0
    [InlineData((ushort)0x2000)] // c.fld (no FPU)
    [InlineData((ushort)0x9C41)] // reserved CA encoding (funct6 100111, funct2 10)
    public void ReservedEncodings_AreIllegalWithTheBitsInMtval(ushort bits)
    {
        var (cause, tval, epc) = _bench.Trap(bits, 2);
        Assert.Equal(2UL, cause);
        Assert.Equal(bits, tval);
        Assert.Equal(_bench.Place(bits, 2), epc);
    }

    [Fact]
    public void MixedWidthCode_WithA32BitInstructionAcrossAPageBoundary()
    {
        using var rig = new Rig();
        ulong start = Rig.Code + 0x1FF8;
        var p = Rig.NewProgram(start)
            .EmitC(Asm.CLi(R.A0, 1))              // 0x1FF8
            .Emit(Asm.Addi(R.A0, R.A0, 2))        // 0x1FFA
            .EmitC(Asm.CAddi(R.A0, 4))            // 0x1FFE: 16 bits, ends the page
            .Emit(Asm.Addi(R.A0, R.A0, 8))        // 0x2000
            .EmitC(Asm.CNop())
            .Exit();
        rig.Load(p);
        rig.RunToExit();
        Assert.Equal(15UL, rig.X(R.A0));

        // Shift by 2 bytes: now the second 32-bit addi straddles 0x1FFE..0x2001.
        using var rig2 = new Rig();
        var q = Rig.NewProgram(start)
            .EmitC(Asm.CLi(R.A0, 1))              // 0x1FF8
            .Emit(Asm.Addi(R.A0, R.A0, 2))        // 0x1FFA
            .Emit(Asm.Addi(R.A0, R.A0, 0x40))     // 0x1FFE: crosses into the next page
            .EmitC(Asm.CAddi(R.A0, 8))            // 0x2002
            .Exit();
        Assert.Equal(Rig.Code + 0x1FFE, start + 6);
        rig2.Load(q);
        rig2.RunToExit();
        Assert.Equal(0x4BUL, rig2.X(R.A0));
    }
}
