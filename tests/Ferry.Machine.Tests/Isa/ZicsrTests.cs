using Ferry.Machine.Board;
using Ferry.Machine.Cpu;
using Ferry.Machine.Tests.Support;

namespace Ferry.Machine.Tests.Isa;

public sealed class ZicsrTests : IDisposable
{
    private readonly InsnBench _bench = new();

    public void Dispose() => _bench.Dispose();

    [Fact]
    public void ReadModifyWrite_ReturnsOldValueAndUpdates()
    {
        Rig rig = _bench.Rig;
        rig.SetCsr(Csr.Mscratch, 0x0F0F);
        Assert.Equal(0x0F0FUL, _bench.Exec(Asm.Csrrw(R.A0, Csr.Mscratch, R.A1), 0x1234));
        Assert.Equal(0x1234UL, rig.Csr(Csr.Mscratch));
        Assert.Equal(0x1234UL, _bench.Exec(Asm.Csrrs(R.A0, Csr.Mscratch, R.A1), 0xF_0000));
        Assert.Equal(0xF_1234UL, rig.Csr(Csr.Mscratch));
        Assert.Equal(0xF_1234UL, _bench.Exec(Asm.Csrrc(R.A0, Csr.Mscratch, R.A1), 0x34));
        Assert.Equal(0xF_1200UL, rig.Csr(Csr.Mscratch));
        Assert.Equal(0xF_1200UL, _bench.Exec(Asm.Csrrwi(R.A0, Csr.Mscratch, 0x1F), 0));
        Assert.Equal(0x1FUL, rig.Csr(Csr.Mscratch));
        Assert.Equal(0x1FUL, _bench.Exec(Asm.Csrrci(R.A0, Csr.Mscratch, 0x5), 0));
        Assert.Equal(0x1AUL, rig.Csr(Csr.Mscratch));
        Assert.Equal(0x1AUL, _bench.Exec(Asm.Csrrsi(R.A0, Csr.Mscratch, 0x1), 0));
        Assert.Equal(0x1BUL, rig.Csr(Csr.Mscratch));

        // rd = rs1: the old value goes to rd, the write uses the register's value before.
        rig.SetX(R.A1, 0x77);
        _bench.Step(Asm.Csrrw(R.A1, Csr.Mscratch, R.A1));
        Assert.Equal(0x1BUL, rig.X(R.A1));
        Assert.Equal(0x77UL, rig.Csr(Csr.Mscratch));
    }

    [Fact]
    public void IdentificationCsrs()
    {
        const ulong Extensions = (1 << 0) | (1 << 2) | (1 << 3) | (1 << 5) | (1 << 8) | (1 << 12) | (1 << 18) | (1 << 20); // A C D F I M S U
        ulong misa = _bench.Exec(Asm.Csrr(R.A0, Csr.Misa), 0);
        Assert.Equal(2UL, misa >> 62);
        Assert.Equal(Extensions, misa & 0x3FF_FFFF);
        Assert.Equal(0UL, _bench.Exec(Asm.Csrr(R.A0, Csr.Mhartid), 0));
        Assert.Equal(0UL, _bench.Exec(Asm.Csrr(R.A0, Csr.Mvendorid), 0));
        ulong mstatus = _bench.Exec(Asm.Csrr(R.A0, Csr.Mstatus), 0);
        Assert.Equal(2UL, (mstatus >> 32) & 3); // UXL = 64
        Assert.Equal(2UL, (mstatus >> 34) & 3); // SXL = 64
    }

    [Theory]
    [InlineData(0x7FF)]
    [InlineData(0x5FF)]
    [InlineData(0xFFF)]
    [InlineData(0x800)]
    [InlineData(0x3A1)] // pmpcfg1 does not exist on RV64
    public void UnknownCsr_IsIllegalWithTheInstructionInMtval(int csr)
    {
        uint insn = Asm.Csrr(R.A0, csr);
        var (cause, tval, epc) = _bench.Trap(insn);
        Assert.Equal(2UL, cause);
        Assert.Equal(insn, tval);
        Assert.Equal(_bench.Place(insn, 4), epc);
    }

    [Theory]
    [InlineData(Csr.Mvendorid)]
    [InlineData(Csr.Mhartid)]
    [InlineData(Csr.Cycle)]
    [InlineData(Csr.Time)]
    [InlineData(Csr.Instret)]
    public void WriteToReadOnlyCsr_IsIllegal(int csr)
    {
        uint write = Asm.Csrw(csr, R.Zero); // csrrw always writes, even from x0
        var (cause, tval, _) = _bench.Trap(write);
        Assert.Equal(2UL, cause);
        Assert.Equal(write, tval);

        _bench.Rig.SetX(R.A1, 1);
        uint set = Asm.Csrrs(R.A0, csr, R.A1);
        Assert.Equal(2UL, _bench.Trap(set).Cause);
        Assert.Equal(2UL, _bench.Trap(Asm.Csrrci(R.A0, csr, 1)).Cause);

        // Set/clear with x0 or uimm 0 do not write: allowed.
        _bench.Step(Asm.Csrrs(R.A0, csr, R.Zero));
        _bench.Step(Asm.Csrrsi(R.A0, csr, 0));
    }

    [Fact]
    public void Minstret_CountsAndCanBeWritten_WithoutMovingTheMachinesInstructionCount()
    {
        using var rig = new Rig();
        var p = Rig.NewProgram()
            .Emit(Asm.Csrr(R.S1, Csr.Minstret))
            .Emit(Asm.Nop(), Asm.Nop(), Asm.Nop())
            .Emit(Asm.Csrr(R.S2, Csr.Minstret))
            .Li(R.A0, 1UL << 32)                   // 2 instructions
            .Emit(Asm.Csrw(Csr.Minstret, R.A0))
            .Emit(Asm.Csrr(R.A1, Csr.Minstret))    // reads the value written
            .Emit(Asm.Nop(), Asm.Nop())
            .Emit(Asm.Csrr(R.A2, Csr.Minstret))
            .Emit(Asm.Csrr(R.A3, Csr.Mcycle));
        Label loop = p.Mark();
        p.Emit(Asm.Addi(R.A4, R.A4, 1)).J(loop);
        rig.Load(p);

        Assert.Equal(RunOutcome.InstructionLimit, rig.Step(13));
        Assert.Equal(4UL, rig.X(R.S2) - rig.X(R.S1));
        Assert.Equal(1UL << 32, rig.X(R.A1));
        Assert.Equal((1UL << 32) + 3, rig.X(R.A2));
        Assert.Equal((1UL << 32) + 4, rig.X(R.A3));

        // The guest's write did not move the machine's own count: run limits still hold.
        Assert.Equal(13UL, rig.Hart.InstructionsRetired);
        Assert.Equal(RunOutcome.InstructionLimit, rig.Step(1000 - 13));
        Assert.Equal(1000UL, rig.Hart.InstructionsRetired);
        Assert.Equal((1UL << 32) + 1000 - 8, rig.Csr(Csr.Minstret)); // the csrw was the 8th instruction
    }

    [Fact]
    public void Mtvec_KeepsOnlyDirectOrVectoredModes()
    {
        Rig rig = _bench.Rig;
        _bench.Exec(Asm.Csrw(Csr.Mscratch, R.A1), 0);
        ulong before = rig.Csr(Csr.Mtvec);
        _bench.Exec(Asm.Csrw(Csr.Mtvec, R.A1), Rig.TrapHandler | 2); // reserved mode: ignored (WARL)
        Assert.Equal(before, rig.Csr(Csr.Mtvec));
        _bench.Exec(Asm.Csrw(Csr.Mepc, R.A1), 0x8000_1235);          // bit 0 of mepc is always 0
        Assert.Equal(0x8000_1234UL, rig.Csr(Csr.Mepc));
    }
}

public sealed class ZifenceiTests
{
    [Fact]
    public void StoreOverDecodedInstruction_ThenFenceI_ExecutesTheNewInstruction()
    {
        using var rig = new Rig();
        var p = Rig.NewProgram();
        Label target = p.NewLabel();
        p.La(R.S0, target)
            .Li(R.S2, Asm.Addi(R.A0, R.A0, 100))
            .Li(R.A0, 0)
            .Emit(target, off => Asm.Jal(R.Ra, off))  // first call: decodes and runs addi a0, a0, 1
            .Emit(Asm.Sw(R.S2, R.S0, 0))               // overwrite it
            .Emit(Asm.FenceI())
            .Emit(target, off => Asm.Jal(R.Ra, off))  // second call: must run addi a0, a0, 100
            .Exit();
        p.Bind(target);
        p.Emit(Asm.Addi(R.A0, R.A0, 1), Asm.Jalr(R.Zero, R.Ra, 0));
        rig.Load(p);
        rig.RunToExit();
        Assert.Equal(101UL, rig.X(R.A0));
    }
}
