using Ferry.Machine.Cpu;
using Ferry.Machine.Tests.Support;

namespace Ferry.Machine.Tests.Privileged;

public sealed class PrivilegeTests
{
    [Theory]
    [InlineData(PrivilegeMode.Machine, 11UL)]
    [InlineData(PrivilegeMode.Supervisor, 9UL)]
    [InlineData(PrivilegeMode.User, 8UL)]
    public void Ecall_CauseDependsOnMode_AndMppRecordsIt(PrivilegeMode mode, ulong cause)
    {
        using var rig = new Rig();
        var p = Rig.NewProgram().OpenPmp();
        Label target = p.NewLabel();
        if (mode != PrivilegeMode.Machine)
        {
            p.EnterMode(mode, target);
        }

        p.Bind(target);
        p.Emit(Asm.Addi(R.A0, R.Zero, 5), Asm.Ecall());
        rig.Load(p).RunToExit();

        HartState s = rig.State;
        Assert.Equal(cause, s.Mcause);
        Assert.Equal(target.Address!.Value + 4, s.Mepc);
        Assert.Equal(0UL, s.Mtval);
        Assert.Equal((ulong)mode, (s.Mstatus >> MstatusBits.MppShift) & 3);
        Assert.Equal(PrivilegeMode.Machine, rig.Hart.Privilege);
        Assert.Equal(5UL, rig.X(R.A0));
    }

    [Fact]
    public void DelegatedUserEcall_GoesToSupervisor_AndSretReturnsToUser()
    {
        using var rig = new Rig();
        var p = Rig.NewProgram().OpenPmp();
        Label sCode = p.NewLabel(), uCode = p.NewLabel(), uEcall = p.NewLabel(), sHandler = p.NewLabel(), afterSret = p.NewLabel();
        p.CsrWrite(Csr.Medeleg, 1UL << 8)
            .La(R.T0, sHandler).Emit(Asm.Csrw(Csr.Stvec, R.T0))
            .EnterMode(PrivilegeMode.Supervisor, sCode);

        // S: sret into U (SPP = 0) at uCode.
        p.Bind(sCode);
        p.La(R.T0, uCode).Emit(Asm.Csrw(Csr.Sepc, R.T0))
            .Li(R.T0, MstatusBits.SPP).Emit(Asm.Csrc(Csr.Sstatus, R.T0))
            .Emit(Asm.Sret());

        // U: ecall, delegated to S. The S handler returns past it once, then U ecalls again.
        p.Bind(uCode);
        p.Emit(Asm.Addi(R.A5, R.A5, 1));
        p.Bind(uEcall);
        p.Emit(Asm.Ecall());
        p.Bind(afterSret);
        p.Emit(Asm.Addi(R.A6, R.Zero, 77), Asm.Ecall());

        p.Align(4).Bind(sHandler);
        Label second = p.NewLabel();
        p.Emit(Asm.Addi(R.S5, R.S5, 1))
            .Emit(Asm.Addi(R.T1, R.Zero, 2))
            .Emit(second, off => Asm.Beq(R.S5, R.T1, off))
            .Emit(Asm.Csrr(R.S1, Csr.Scause), Asm.Csrr(R.S2, Csr.Sepc), Asm.Csrr(R.S3, Csr.Sstatus), Asm.Csrr(R.S4, Csr.Stval))
            .Emit(Asm.Csrr(R.T0, Csr.Sepc), Asm.Addi(R.T0, R.T0, 4), Asm.Csrw(Csr.Sepc, R.T0), Asm.Sret());
        p.Bind(second);
        p.Emit(Asm.Ecall()); // from S: not delegated, M exits
        rig.Load(p).RunToExit();

        Assert.Equal(8UL, rig.X(R.S1));
        Assert.Equal(uEcall.Address, rig.X(R.S2));
        Assert.Equal(0UL, rig.X(R.S3) & MstatusBits.SPP); // came from U
        Assert.Equal(0UL, rig.X(R.S4));
        Assert.Equal(1UL, rig.X(R.A5));
        Assert.Equal(77UL, rig.X(R.A6)); // sret went back to U after the ecall
        Assert.Equal(2UL, rig.X(R.S5));
        Assert.Equal(9UL, rig.State.Mcause); // the final ecall came from S
        Assert.Equal(0UL, rig.State.Scause & (1UL << 63));
    }

    [Fact]
    public void SretWithSppSet_ReturnsToSupervisor()
    {
        using var rig = new Rig();
        var p = Rig.NewProgram().OpenPmp();
        Label s1 = p.NewLabel(), s2 = p.NewLabel();
        p.EnterMode(PrivilegeMode.Supervisor, s1);
        p.Bind(s1);
        p.La(R.T0, s2).Emit(Asm.Csrw(Csr.Sepc, R.T0))
            .Li(R.T0, MstatusBits.SPP | MstatusBits.SPIE).Emit(Asm.Csrs(Csr.Sstatus, R.T0))
            .Emit(Asm.Sret());
        p.Bind(s2);
        p.Emit(Asm.Csrr(R.A0, Csr.Sstatus), Asm.Ecall());
        rig.Load(p).RunToExit();
        Assert.Equal(9UL, rig.State.Mcause);
        ulong sstatus = rig.X(R.A0);
        Assert.Equal(MstatusBits.SIE, sstatus & MstatusBits.SIE);   // SIE <- SPIE
        Assert.Equal(MstatusBits.SPIE, sstatus & MstatusBits.SPIE); // SPIE <- 1
        Assert.Equal(0UL, sstatus & MstatusBits.SPP);                // SPP <- U
    }

    [Fact]
    public void Mret_PopsTheInterruptEnableStack()
    {
        using var rig = new Rig();
        var p = Rig.NewProgram().OpenPmp();
        Label s = p.NewLabel();
        p.Li(R.T0, MstatusBits.MPIE).Emit(Asm.Csrs(Csr.Mstatus, R.T0), Asm.Csrrci(0, Csr.Mstatus, 8))
            .EnterMode(PrivilegeMode.Supervisor, s);
        p.Bind(s);
        p.Emit(Asm.Ecall());
        rig.Load(p).RunToExit();

        // mret set MIE from MPIE (1) in S; the ecall then pushed MIE = 1 into MPIE and cleared MIE.
        ulong mstatus = rig.State.Mstatus;
        Assert.Equal(MstatusBits.MPIE, mstatus & MstatusBits.MPIE);
        Assert.Equal(0UL, mstatus & MstatusBits.MIE);
        Assert.Equal(1UL, (mstatus >> MstatusBits.MppShift) & 3);
    }

    public static TheoryData<PrivilegeMode, string, ulong> IllegalHere => new()
    {
        { PrivilegeMode.Supervisor, "mret", 0 },
        { PrivilegeMode.User, "sret", 0 },
        { PrivilegeMode.User, "mret", 0 },
        { PrivilegeMode.User, "wfi", 0 },
        { PrivilegeMode.User, "sfence.vma", 0 },
        { PrivilegeMode.Supervisor, "csrr mstatus", 0 },
        { PrivilegeMode.Supervisor, "csrw mscratch", 0 },
        { PrivilegeMode.User, "csrr sstatus", 0 },
        { PrivilegeMode.User, "csrr cycle", 0 },           // mcounteren = 0
        { PrivilegeMode.Supervisor, "csrr cycle", 0 },
        { PrivilegeMode.Supervisor, "sret", MstatusBits.TSR },
        { PrivilegeMode.Supervisor, "wfi", MstatusBits.TW },
        { PrivilegeMode.Supervisor, "sfence.vma", MstatusBits.TVM },
        { PrivilegeMode.Supervisor, "csrr satp", MstatusBits.TVM },
    };

    private static uint Encode(string insn) => insn switch
    {
        "mret" => Asm.Mret(),
        "sret" => Asm.Sret(),
        "wfi" => Asm.Wfi(),
        "sfence.vma" => Asm.SfenceVma(),
        "csrr mstatus" => Asm.Csrr(R.A0, Csr.Mstatus),
        "csrw mscratch" => Asm.Csrw(Csr.Mscratch, R.A0),
        "csrr sstatus" => Asm.Csrr(R.A0, Csr.Sstatus),
        "csrr cycle" => Asm.Csrr(R.A0, Csr.Cycle),
        "csrr satp" => Asm.Csrr(R.A0, Csr.Satp),
        _ => throw new ArgumentException(insn),
    };

    [Theory]
    [MemberData(nameof(IllegalHere))]
    public void PrivilegedInstructions_AreIllegalBelowTheirLevel(PrivilegeMode mode, string insn, ulong mstatusBits)
    {
        using var rig = new Rig();
        var p = Rig.NewProgram().OpenPmp();
        if (mstatusBits != 0)
        {
            p.Li(R.T0, mstatusBits).Emit(Asm.Csrs(Csr.Mstatus, R.T0));
        }

        Label target = p.NewLabel();
        p.EnterMode(mode, target);
        p.Bind(target);
        p.Emit(Encode(insn), Asm.Ebreak());
        rig.Load(p).RunToExit();

        HartState s = rig.State;
        Assert.Equal(2UL, s.Mcause);
        Assert.Equal(Encode(insn), s.Mtval);
        Assert.Equal(target.Address, s.Mepc);
        Assert.Equal((ulong)mode, (s.Mstatus >> MstatusBits.MppShift) & 3);
    }

    [Fact]
    public void Counters_ReadableInUserModeWhenEnabled()
    {
        using var rig = new Rig();
        var p = Rig.NewProgram().OpenPmp().CsrWrite(Csr.Mcounteren, 7).CsrWrite(Csr.Scounteren, 7);
        Label u = p.NewLabel();
        p.EnterMode(PrivilegeMode.User, u);
        p.Bind(u);
        p.Emit(Asm.Csrr(R.A0, Csr.Instret), Asm.Nop(), Asm.Csrr(R.A1, Csr.Instret), Asm.Csrr(R.A2, Csr.Time), Asm.Ecall());
        rig.Load(p).RunToExit();
        Assert.Equal(8UL, rig.State.Mcause);
        Assert.Equal(2UL, rig.X(R.A1) - rig.X(R.A0));
        Assert.InRange(rig.X(R.A2), (rig.Hart.VirtualClock / 10) - 1, rig.Hart.VirtualClock / 10); // icount: mtime = clock / 10
    }

    [Theory]
    [InlineData(0x0000_0000u)]  // all-zero (a 16-bit illegal instruction)
    [InlineData(0x1234_500Bu)]  // custom-0
    [InlineData(0x0000_7003u)]  // LOAD funct3 7
    [InlineData(0xFFFF_FFFFu)]
    [InlineData(0x0200_7053u)]  // fadd.d: no F/D
    [InlineData(0x3020_8073u)]  // mret with rs1 != 0
    public void IllegalInstruction_ReportsItsBitsInMtval(uint bits)
    {
        using var rig = new Rig();
        var p = Rig.NewProgram().Emit(Asm.Nop());
        Label bad = p.Mark();
        p.Emit(bits);
        rig.Load(p).RunToExit();
        HartState s = rig.State;
        Assert.Equal(2UL, s.Mcause);
        Assert.Equal(bad.Address, s.Mepc);
        Assert.Equal((bits & 3) == 3 ? bits : bits & 0xFFFF, s.Mtval);
    }
}
