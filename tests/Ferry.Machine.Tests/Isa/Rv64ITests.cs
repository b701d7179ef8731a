using CsCheck;
using Ferry.Machine.Tests.Support;
using static Ferry.Machine.Tests.Support.Operands;

namespace Ferry.Machine.Tests.Isa;

public sealed class Rv64ITests : IDisposable
{
    private readonly InsnBench _bench = new();

    public void Dispose() => _bench.Dispose();

    private sealed record BinOp(string Name, Func<int, int, int, uint> Encode, Func<ulong, ulong, ulong> Reference)
    {
        public override string ToString() => Name;
    }

    private static readonly BinOp[] RegisterOps =
    [
        new("add", Asm.Add, (a, b) => a + b),
        new("sub", Asm.Sub, (a, b) => a - b),
        new("sll", Asm.Sll, (a, b) => a << (int)(b % 64)),
        new("slt", Asm.Slt, (a, b) => (long)a < (long)b ? 1UL : 0),
        new("sltu", Asm.Sltu, (a, b) => a < b ? 1UL : 0),
        new("xor", Asm.Xor, (a, b) => a ^ b),
        new("srl", Asm.Srl, (a, b) => a >> (int)(b % 64)),
        new("sra", Asm.Sra, (a, b) => (ulong)((long)a >> (int)(b % 64))),
        new("or", Asm.Or, (a, b) => a | b),
        new("and", Asm.And, (a, b) => a & b),
        new("addw", Asm.Addw, (a, b) => SextW((uint)a + (uint)b)),
        new("subw", Asm.Subw, (a, b) => SextW((uint)a - (uint)b)),
        new("sllw", Asm.Sllw, (a, b) => SextW((uint)a << (int)(b % 32))),
        new("srlw", Asm.Srlw, (a, b) => SextW((uint)a >> (int)(b % 32))),
        new("sraw", Asm.Sraw, (a, b) => (ulong)(long)((int)(uint)a >> (int)(b % 32))),
    ];

    private static readonly BinOp[] ImmediateOps =
    [
        new("addi", Asm.Addi, (a, i) => a + i),
        new("slti", Asm.Slti, (a, i) => (long)a < (long)i ? 1UL : 0),
        new("sltiu", Asm.Sltiu, (a, i) => a < i ? 1UL : 0),
        new("xori", Asm.Xori, (a, i) => a ^ i),
        new("ori", Asm.Ori, (a, i) => a | i),
        new("andi", Asm.Andi, (a, i) => a & i),
        new("addiw", Asm.Addiw, (a, i) => SextW(a + i)),
    ];

    private static readonly BinOp[] ShiftImmediateOps =
    [
        new("slli", Asm.Slli, (a, s) => a << (int)s),
        new("srli", Asm.Srli, (a, s) => a >> (int)s),
        new("srai", Asm.Srai, (a, s) => (ulong)((long)a >> (int)s)),
        new("slliw", Asm.Slliw, (a, s) => SextW((uint)a << (int)s)),
        new("srliw", Asm.Srliw, (a, s) => SextW((uint)a >> (int)s)),
        new("sraiw", Asm.Sraiw, (a, s) => (ulong)(long)((int)(uint)a >> (int)s)),
    ];

    [Fact]
    public void RegisterRegisterOps_MatchCSharpSemantics()
    {
        Gen.Select(Gen.Int[0, RegisterOps.Length - 1], Value, Value).Sample((i, a, b) =>
        {
            BinOp op = RegisterOps[i];
            Assert.True(op.Reference(a, b) == _bench.Exec(op.Encode(R.A0, R.A1, R.A2), a, b), $"{op.Name} 0x{a:x}, 0x{b:x}");
        }, iter: 4000, threads: 1);
    }

    [Fact]
    public void RegisterImmediateOps_MatchCSharpSemantics()
    {
        Gen.Select(Gen.Int[0, ImmediateOps.Length - 1], Value, Imm12).Sample((i, a, imm) =>
        {
            BinOp op = ImmediateOps[i];
            Assert.True(op.Reference(a, (ulong)(long)imm) == _bench.Exec(op.Encode(R.A0, R.A1, imm), a), $"{op.Name} 0x{a:x}, {imm}");
        }, iter: 3000, threads: 1);
    }

    [Fact]
    public void ShiftImmediateOps_MatchCSharpSemantics()
    {
        Gen.Select(Gen.Int[0, ShiftImmediateOps.Length - 1], Value, Gen.Int[0, 63]).Sample((i, a, shamt) =>
        {
            BinOp op = ShiftImmediateOps[i];
            int s = op.Name.EndsWith('w') ? shamt & 31 : shamt;
            Assert.True(op.Reference(a, (ulong)s) == _bench.Exec(op.Encode(R.A0, R.A1, s), a), $"{op.Name} 0x{a:x}, {s}");
        }, iter: 2000, threads: 1);
    }

    [Theory]
    [InlineData(0x8000_0000_0000_0000UL, 63, 0xFFFF_FFFF_FFFF_FFFFUL, 1UL, 0UL)]
    [InlineData(0xFFFF_FFFF_FFFF_FFFFUL, 63, 0xFFFF_FFFF_FFFF_FFFFUL, 1UL, 0x8000_0000_0000_0000UL)]
    [InlineData(0x0000_0000_0000_0001UL, 64 + 63, 0UL, 0UL, 0x8000_0000_0000_0000UL)] // rs2 uses only its low 6 bits
    public void Shifts_By63_UseLowSixBits(ulong value, ulong amount, ulong sra, ulong srl, ulong sll)
    {
        Assert.Equal(sra, _bench.Exec(Asm.Sra(R.A0, R.A1, R.A2), value, amount));
        Assert.Equal(srl, _bench.Exec(Asm.Srl(R.A0, R.A1, R.A2), value, amount));
        Assert.Equal(sll, _bench.Exec(Asm.Sll(R.A0, R.A1, R.A2), value, amount));
        Assert.Equal(sra, _bench.Exec(Asm.Srai(R.A0, R.A1, 63), value));
    }

    [Fact]
    public void WordShifts_By31_SignExtendTheWordResult()
    {
        // Upper 32 bits of the source are ignored; the 32-bit result is sign-extended.
        Assert.Equal(0xFFFF_FFFF_8000_0000UL, _bench.Exec(Asm.Slliw(R.A0, R.A1, 31), 0xFFFF_FFFF_0000_0001));
        Assert.Equal(0xFFFF_FFFF_FFFF_FFFFUL, _bench.Exec(Asm.Sraiw(R.A0, R.A1, 31), 0x0000_0000_8000_0000));
        Assert.Equal(1UL, _bench.Exec(Asm.Srliw(R.A0, R.A1, 31), 0x1234_5678_8000_0000));
        Assert.Equal(0xFFFF_FFFF_8000_0000UL, _bench.Exec(Asm.Sllw(R.A0, R.A1, R.A2), 1, 31 + 32)); // rs2 uses only 5 bits
        Assert.Equal(0xFFFF_FFFF_FFFF_FFFFUL, _bench.Exec(Asm.Sraw(R.A0, R.A1, R.A2), 0x8000_0000, 63));
        Assert.Equal(1UL, _bench.Exec(Asm.Srlw(R.A0, R.A1, R.A2), 0xFFFF_FFFF_8000_0000, 31));
        Assert.Equal(0xFFFF_FFFF_8000_0000UL, _bench.Exec(Asm.Addw(R.A0, R.A1, R.A2), 0x7FFF_FFFF, 1));
        Assert.Equal(0x7FFF_FFFFUL, _bench.Exec(Asm.Subw(R.A0, R.A1, R.A2), 0x8000_0000, 1));
        Assert.Equal(0xFFFF_FFFF_8000_0000UL, _bench.Exec(Asm.Addiw(R.A0, R.A1, 1), 0x0000_0005_7FFF_FFFF));
        Assert.Equal(0x0000_0000_1234_5678UL, _bench.Exec(Asm.Addiw(R.A0, R.A1, 0), 0xABCD_0000_1234_5678)); // sext.w
    }

    [Fact]
    public void Li_MaterializesAny64BitConstant()
    {
        // lui, addiw, slli and addi chained by the assembler: the machine must reproduce the value.
        using var rig = new Rig();
        Value.Sample(v =>
        {
            var p = Rig.NewProgram(Rig.Code + 0x8000).Li(R.A0, v).Halt();
            rig.Load(p);
            int count = ProgramBuilder.LiSequence(R.A0, (long)v).Count;
            rig.Step(count);
            Assert.True(v == rig.X(R.A0), $"li 0x{v:x} gave 0x{rig.X(R.A0):x}");
        }, iter: 300, threads: 1);
    }

    [Fact]
    public void UpperImmediates()
    {
        Assert.Equal(0xFFFF_FFFF_8000_0000UL, _bench.Exec(Asm.Lui(R.A0, 0x80000), 0));
        Assert.Equal(0x0000_0000_7FFF_F000UL, _bench.Exec(Asm.Lui(R.A0, 0x7FFFF), 0));
        ulong at = _bench.Place(Asm.Auipc(R.A0, 0xFFFFF), 4);
        Assert.Equal(at - 0x1000, _bench.Exec(Asm.Auipc(R.A0, 0xFFFFF), 0));
        at = _bench.Place(Asm.Auipc(R.A0, 0x12), 4);
        Assert.Equal(at + 0x12000, _bench.Exec(Asm.Auipc(R.A0, 0x12), 0));
    }

    [Fact]
    public void X0_IgnoresWrites()
    {
        _bench.Rig.WriteU64(Rig.Data, 0x5555_6666_7777_8888);
        uint[] writers =
        [
            Asm.Addi(R.Zero, R.A1, 5),
            Asm.Lui(R.Zero, 0x12345),
            Asm.Mul(R.Zero, R.A1, R.A1),
            Asm.Ld(R.Zero, R.A1, 0),
            Asm.Csrrs(R.Zero, Cpu.Csr.Misa, R.Zero),
            Asm.Amo(Asm.AmoAdd, true, R.Zero, R.A1, R.A1),
            Asm.Auipc(R.Zero, 1),
        ];
        foreach (uint insn in writers)
        {
            _bench.Rig.SetX(R.A1, Rig.Data);
            _bench.Step(insn);

            // An instruction reading x0 right after the write must still see 0 (no hidden state behind x0).
            Assert.True(_bench.Exec(Asm.Add(R.A0, R.Zero, R.Zero), 99, 99) == 0, $"x0 changed by 0x{insn:x8}");
            Assert.Equal(7UL, _bench.Exec(Asm.Addi(R.A0, R.Zero, 7), 0));
            Assert.Equal(0UL, _bench.Rig.X(R.Zero));
        }

        // The AMO with rd = x0 still did its memory update.
        Assert.Equal(0x5555_6666_7777_8888UL + Rig.Data, _bench.Rig.ReadU64(Rig.Data));

        // jal x0 jumps without linking.
        ulong at = _bench.Place(Asm.Jal(R.Zero, 64), 4);
        Assert.Equal(at + 64, _bench.Step(Asm.Jal(R.Zero, 64)));
        Assert.Equal(0UL, _bench.Exec(Asm.Add(R.A0, R.Zero, R.Zero), 99, 99));
    }

    private static readonly (string Name, Func<int, int, int, uint> Encode, Func<ulong, ulong, bool> Taken)[] Branches =
    [
        ("beq", Asm.Beq, (a, b) => a == b),
        ("bne", Asm.Bne, (a, b) => a != b),
        ("blt", Asm.Blt, (a, b) => (long)a < (long)b),
        ("bge", Asm.Bge, (a, b) => (long)a >= (long)b),
        ("bltu", Asm.Bltu, (a, b) => a < b),
        ("bgeu", Asm.Bgeu, (a, b) => a >= b),
    ];

    [Fact]
    public void Branches_TakenExactlyWhenTheConditionHolds()
    {
        Gen<(ulong, ulong)> pairs = Gen.Frequency(
            (3, (IGen<(ulong, ulong)>)Gen.Select(Value, Value)),
            (1, Value.Select(v => (v, v))));
        Gen.Select(Gen.Int[0, Branches.Length - 1], pairs, Gen.OneOf(-4096, -8, 8, 12, 4094)).Sample((i, ab, offset) =>
        {
            var (name, encode, taken) = Branches[i];
            uint insn = encode(R.A1, R.A2, offset);
            ulong at = _bench.Place(insn, 4);
            _bench.Rig.SetX(R.A1, ab.Item1).SetX(R.A2, ab.Item2);
            ulong pc = _bench.Step(insn);
            ulong expected = taken(ab.Item1, ab.Item2) ? at + (ulong)(long)offset : at + 4;
            Assert.True(expected == pc, $"{name} 0x{ab.Item1:x}, 0x{ab.Item2:x}, {offset}: pc 0x{pc:x}, expected 0x{expected:x}");
        }, iter: 2000, threads: 1);
    }

    [Fact]
    public void Jal_LinksAndJumps()
    {
        ulong at = _bench.Place(Asm.Jal(R.Ra, -2048), 4);
        Assert.Equal(at - 2048, _bench.Step(Asm.Jal(R.Ra, -2048)));
        Assert.Equal(at + 4, _bench.Rig.X(R.Ra));
        at = _bench.Place(Asm.Jal(R.A0, 0xFFFFE), 4);
        Assert.Equal(at + 0xFFFFE, _bench.Step(Asm.Jal(R.A0, 0xFFFFE)));
        Assert.Equal(at + 4, _bench.Rig.X(R.A0));
    }

    [Fact]
    public void Jalr_ClearsBitZeroAndReadsRs1BeforeLinking()
    {
        ulong target = Rig.Code + 0x2000;
        _bench.Rig.SetX(R.A1, target - 3);
        ulong at = _bench.Place(Asm.Jalr(R.A1, R.A1, 4), 4); // rd == rs1
        Assert.Equal(target, _bench.Step(Asm.Jalr(R.A1, R.A1, 4)));
        Assert.Equal(at + 4, _bench.Rig.X(R.A1));
    }

    [Fact]
    public void Loads_SignAndZeroExtend()
    {
        _bench.Rig.WriteU64(Rig.Data, 0x8899_AABB_CCDD_EEFF);
        ulong a = Rig.Data;
        Assert.Equal(0xFFFF_FFFF_FFFF_FFFFUL, _bench.Exec(Asm.Lb(R.A0, R.A1, 0), a));
        Assert.Equal(0xFFUL, _bench.Exec(Asm.Lbu(R.A0, R.A1, 0), a));
        Assert.Equal(0xFFFF_FFFF_FFFF_EEFFUL, _bench.Exec(Asm.Lh(R.A0, R.A1, 0), a));
        Assert.Equal(0xEEFFUL, _bench.Exec(Asm.Lhu(R.A0, R.A1, 0), a));
        Assert.Equal(0xFFFF_FFFF_CCDD_EEFFUL, _bench.Exec(Asm.Lw(R.A0, R.A1, 0), a));
        Assert.Equal(0xCCDD_EEFFUL, _bench.Exec(Asm.Lwu(R.A0, R.A1, 0), a));
        Assert.Equal(0x8899_AABB_CCDD_EEFFUL, _bench.Exec(Asm.Ld(R.A0, R.A1, 0), a));
        Assert.Equal(0xFFFF_FFFF_FFFF_FF88UL, _bench.Exec(Asm.Lb(R.A0, R.A1, 7), a));
        Assert.Equal(0x8899_AABB_CCDD_EEFFUL, _bench.Exec(Asm.Ld(R.A0, R.A1, -8), a + 8)); // negative offset
    }

    [Fact]
    public void Stores_WriteOnlyTheirWidth()
    {
        ulong a = Rig.Data + 0x100;
        _bench.Rig.WriteU64(a, 0x1111_1111_1111_1111);
        _bench.Exec(Asm.Sb(R.A2, R.A1, 0), a, 0xAABB_CCDD_EEFF_0022);
        Assert.Equal(0x1111_1111_1111_1122UL, _bench.Rig.ReadU64(a));
        _bench.Exec(Asm.Sh(R.A2, R.A1, 2), a, 0xAABB_CCDD_EEFF_3344);
        Assert.Equal(0x1111_1111_3344_1122UL, _bench.Rig.ReadU64(a));
        _bench.Exec(Asm.Sw(R.A2, R.A1, 4), a, 0xAABB_CCDD_5566_7788);
        Assert.Equal(0x5566_7788_3344_1122UL, _bench.Rig.ReadU64(a));
        _bench.Exec(Asm.Sd(R.A2, R.A1, 8), a, 0x0102_0304_0506_0708);
        Assert.Equal(0x0102_0304_0506_0708UL, _bench.Rig.ReadU64(a + 8));
    }

    [Theory]
    [InlineData(0x101)] // misaligned within a page
    [InlineData(0x103)]
    [InlineData(0x107)]
    [InlineData(0xFFD)] // across a page boundary
    [InlineData(0xFFF)]
    [InlineData(0xFF9)]
    public void MisalignedLoadsAndStores_Succeed(int offset)
    {
        ulong page = Rig.Data + 0x2000;
        var pattern = new byte[0x2000];
        for (int i = 0; i < pattern.Length; i++)
        {
            pattern[i] = (byte)(i * 7 + 3);
        }

        _bench.Rig.Memory.WritePhysical(page, pattern);
        ulong a = page + (ulong)offset;

        // Warm the TLB with an aligned access to the same page first, so the fast path is tried.
        _bench.Exec(Asm.Ld(R.A0, R.A1, 0), page);
        ulong expected = BitConverter.ToUInt64(pattern, offset);
        Assert.Equal(expected, _bench.Exec(Asm.Ld(R.A0, R.A1, 0), a));
        Assert.Equal(SextW(expected), _bench.Exec(Asm.Lw(R.A0, R.A1, 0), a));
        Assert.Equal((ulong)(uint)expected, _bench.Exec(Asm.Lwu(R.A0, R.A1, 0), a));
        Assert.Equal((ulong)(long)(short)expected, _bench.Exec(Asm.Lh(R.A0, R.A1, 0), a));
        Assert.Equal((ulong)(ushort)expected, _bench.Exec(Asm.Lhu(R.A0, R.A1, 0), a));

        _bench.Exec(Asm.Sd(R.A2, R.A1, 0), a, 0x0123_4567_89AB_CDEF);
        Assert.Equal(0x0123_4567_89AB_CDEFUL, BitConverter.ToUInt64(_bench.Rig.ReadBytes(a, 8)));
        Assert.Equal(pattern[offset - 1], _bench.Rig.ReadBytes(a - 1, 1)[0]);
        Assert.Equal(pattern[offset + 8], _bench.Rig.ReadBytes(a + 8, 1)[0]);
        _bench.Exec(Asm.Sw(R.A2, R.A1, 1), a, 0xCAFE_F00D);
        Assert.Equal(0xCAFE_F00DU, BitConverter.ToUInt32(_bench.Rig.ReadBytes(a + 1, 4)));
        _bench.Exec(Asm.Sh(R.A2, R.A1, 0), a, 0xBEEF);
        Assert.Equal((ushort)0xBEEF, BitConverter.ToUInt16(_bench.Rig.ReadBytes(a, 2)));
        Assert.Equal(0xBEEFUL, _bench.Exec(Asm.Lhu(R.A0, R.A1, 0), a));
    }

    [Fact]
    public void LoadFromUnmappedAddress_IsAnAccessFault()
    {
        _bench.Rig.SetX(R.A1, 0x4000_0000);
        var (cause, tval, epc) = _bench.Trap(Asm.Ld(R.A0, R.A1, 8));
        Assert.Equal(5UL, cause);
        Assert.Equal(0x4000_0008UL, tval);
        Assert.Equal(_bench.Place(Asm.Ld(R.A0, R.A1, 8), 4), epc);
        _bench.Rig.SetX(R.A1, 0x4000_0000);
        (cause, tval, _) = _bench.Trap(Asm.Sw(R.A0, R.A1, 4));
        Assert.Equal(7UL, cause);
        Assert.Equal(0x4000_0004UL, tval);
    }

    [Fact]
    public void EcallEbreakAndFences()
    {
        var (cause, tval, _) = _bench.Trap(Asm.Ecall());
        Assert.Equal(11UL, cause);
        Assert.Equal(0UL, tval);
        (cause, tval, _) = _bench.Trap(Asm.Ebreak());
        Assert.Equal(3UL, cause);
        Assert.Equal(0UL, tval); // QEMU 7.2 writes 0 (the spec allows 0 or the pc)
        ulong at = _bench.Place(Asm.Fence(), 4);
        Assert.Equal(at + 4, _bench.Step(Asm.Fence()));
    }

    [Fact]
    public void Pause_TheZihintpauseHintLinuxsCpuRelaxExecutes_IsAnOrdinaryFence()
    {
        const uint Pause = 0x0100_000F; // fence w,0
        ulong at = _bench.Place(Pause, 4);
        Assert.Equal(at + 4, _bench.Step(Pause));
    }
}
