using System.Diagnostics;
using Ferry.Machine.Cpu;
using Ferry.Machine.Tests.Support;

namespace Ferry.Machine.Tests.Privileged;

public sealed class InterruptTests
{
    private const ulong InterruptBit = 1UL << 63;

    /// <summary>
    /// Arms mtimecmp = mtime + <paramref name="ticks"/>, enables MTIE and MIE, counts in a loop; the
    /// handler records mtime, mcause and mepc, then exits.
    /// </summary>
    private static (ProgramBuilder Program, Label Loop) TimerProgram(ulong ticks, bool vectored = false)
    {
        var p = Rig.NewProgram();
        Label handler = p.NewLabel(), loop = p.NewLabel(), trapBase = p.NewLabel();
        p.La(R.T0, vectored ? trapBase : handler);
        if (vectored)
        {
            p.Emit(Asm.Ori(R.T0, R.T0, 1));
        }

        p.Emit(Asm.Csrw(Csr.Mtvec, R.T0))
            .Li(R.S0, Priv.ClintMtime).Emit(Asm.Ld(R.S1, R.S0, 0))
            .Li(R.T0, ticks).Emit(Asm.Add(R.S1, R.S1, R.T0))
            .Li(R.S2, Priv.ClintMtimecmp).Emit(Asm.Sd(R.S1, R.S2, 0))
            .Li(R.T0, Irq.MTIP).Emit(Asm.Csrs(Csr.Mie, R.T0))
            .Emit(Asm.Addi(R.A0, R.Zero, 0))
            .Emit(Asm.Csrrsi(0, Csr.Mstatus, 8));
        p.Bind(loop);
        p.Emit(Asm.Addi(R.A0, R.A0, 1)).J(loop);

        if (vectored)
        {
            // Vector table: entry 0 (exceptions) marks a wrong dispatch; entry 7 is the timer.
            p.Align(4).Bind(trapBase);
            p.Emit(Asm.Addi(R.A7, R.Zero, 99)).Exit();
            p.PadTo(trapBase.Address!.Value + (4 * 7));
            p.J(handler);
        }

        p.Align(4).Bind(handler);
        p.Emit(Asm.Csrr(R.S6, Csr.Minstret), Asm.Ld(R.S3, R.S0, 0), Asm.Csrr(R.S4, Csr.Mcause), Asm.Csrr(R.S5, Csr.Mepc)).Exit();
        return (p, loop);
    }

    [Fact]
    public void TimerInterrupt_TakenExactlyAtTheDeadline_AndDeterministic()
    {
        var results = new List<(ulong Count, ulong Epc, ulong Retired)>();
        for (int run = 0; run < 2; run++)
        {
            using var rig = new Rig();
            (ProgramBuilder p, Label loop) = TimerProgram(500);
            rig.Load(p).RunToExit();
            Assert.Equal(InterruptBit | 7, rig.X(R.S4));
            ulong deadline = rig.X(R.S1);
            ulong seen = rig.X(R.S3);
            Assert.True(seen >= deadline, $"interrupt taken early: mtime {seen} < mtimecmp {deadline}");
            Assert.True(seen - deadline <= 1, $"interrupt taken late: mtime {seen}, mtimecmp {deadline}");

            // Exactly: icount mtime = clock / 10 and no WFI here, so the interrupt comes after exactly
            // 10 * mtimecmp instructions (minstret as read by the handler's first instruction).
            Assert.Equal(10 * deadline, rig.X(R.S6));
            Assert.InRange(rig.X(R.S5), loop.Address!.Value, loop.Address.Value + 4);

            // 500 ticks = 5000 instructions, about half of them loop increments.
            Assert.InRange(rig.X(R.A0), 2400UL, 2500UL);
            results.Add((rig.X(R.A0), rig.X(R.S5), rig.Hart.InstructionsRetired));
        }

        Assert.Equal(results[0], results[1]);
    }

    [Fact]
    public void VectoredMtvec_DispatchesInterruptsToBasePlus4TimesCause()
    {
        using var rig = new Rig();
        (ProgramBuilder p, _) = TimerProgram(50, vectored: true);
        rig.Load(p).RunToExit();
        Assert.Equal(InterruptBit | 7, rig.X(R.S4));
        Assert.NotEqual(99UL, rig.X(R.A7));
    }

    [Fact]
    public void Wfi_SkipsToTheTimerDeadline_InIcountMode()
    {
        using var rig = new Rig();
        var p = Rig.NewProgram();
        Label handler = p.NewLabel(), wfi = p.NewLabel();
        p.La(R.T0, handler).Emit(Asm.Csrw(Csr.Mtvec, R.T0))
            .Li(R.S0, Priv.ClintMtime).Emit(Asm.Ld(R.S1, R.S0, 0))
            .Li(R.T0, 100_000).Emit(Asm.Add(R.S1, R.S1, R.T0)) // 10 ms of guest time
            .Li(R.S2, Priv.ClintMtimecmp).Emit(Asm.Sd(R.S1, R.S2, 0))
            .Li(R.T0, Irq.MTIP).Emit(Asm.Csrs(Csr.Mie, R.T0))
            .Emit(Asm.Csrrsi(0, Csr.Mstatus, 8));
        p.Bind(wfi);
        p.Emit(Asm.Wfi()).Halt();
        p.Align(4).Bind(handler);
        p.Emit(Asm.Ld(R.S3, R.S0, 0), Asm.Csrr(R.S4, Csr.Mcause), Asm.Csrr(R.S5, Csr.Mepc)).Exit();
        rig.Load(p);

        var watch = Stopwatch.StartNew();
        rig.RunToExit();
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5), "WFI waited in real time although IdleSleep is off");
        Assert.Equal(InterruptBit | 7, rig.X(R.S4));
        Assert.Equal(wfi.Address + 4, rig.X(R.S5)); // WFI retired; the interrupt came after it
        Assert.True(rig.X(R.S3) >= rig.X(R.S1));
        Assert.True(rig.Hart.InstructionsRetired < 100, $"{rig.Hart.InstructionsRetired} instructions: WFI spun instead of waiting");
        Assert.True(rig.Hart.VirtualClock >= 10 * rig.X(R.S1), "the virtual clock did not advance to the deadline");
    }

    [Fact]
    public void Wfi_WithInterruptsGloballyOff_WakesWithoutTrapping()
    {
        using var rig = new Rig();
        var p = Rig.NewProgram()
            .Li(R.S0, Priv.ClintMtime).Emit(Asm.Ld(R.S1, R.S0, 0))
            .Emit(Asm.Addi(R.S1, R.S1, 1000))
            .Li(R.S2, Priv.ClintMtimecmp).Emit(Asm.Sd(R.S1, R.S2, 0))
            .Li(R.T0, Irq.MTIP).Emit(Asm.Csrs(Csr.Mie, R.T0))
            .Emit(Asm.Wfi(), Asm.Addi(R.A0, R.Zero, 42), Asm.Ld(R.S3, R.S0, 0))
            .Exit();
        rig.Load(p).RunToExit();
        Assert.Equal(42UL, rig.X(R.A0));
        Assert.Equal(0UL, rig.State.Mcause);
        Assert.True(rig.X(R.S3) >= rig.X(R.S1));
        Assert.Equal(Irq.MTIP, rig.Hart.Mip & Irq.MTIP);
    }

    [Fact]
    public void DelegatedSupervisorTimerInterrupt_IsTakenInS()
    {
        using var rig = new Rig();
        var p = Rig.NewProgram().OpenPmp();
        Label s = p.NewLabel(), sHandler = p.NewLabel(), spin = p.NewLabel();
        p.CsrWrite(Csr.Mideleg, Irq.STIP)
            .La(R.T0, sHandler).Emit(Asm.Csrw(Csr.Stvec, R.T0))
            .Li(R.T0, Irq.STIP).Emit(Asm.Csrs(Csr.Mie, R.T0), Asm.Csrs(Csr.Mip, R.T0)) // M raises STIP
            .EnterMode(PrivilegeMode.Supervisor, s);
        p.Bind(s);
        p.Emit(Asm.Addi(R.A0, R.Zero, 1));
        p.Emit(Asm.Csrrsi(0, Csr.Sstatus, 2)); // SIE: the pending STI is taken now
        p.Bind(spin);
        p.Emit(Asm.Addi(R.A1, R.A1, 1)).J(spin);
        p.Align(4).Bind(sHandler);
        p.Emit(Asm.Csrr(R.S1, Csr.Scause), Asm.Csrr(R.S2, Csr.Sepc), Asm.Csrr(R.S3, Csr.Sstatus), Asm.Ecall());
        rig.Load(p).RunToExit();

        Assert.Equal(InterruptBit | 5, rig.X(R.S1));
        Assert.Equal(spin.Address, rig.X(R.S2)); // taken right after the csrsi
        Assert.Equal(0UL, rig.X(R.A1));
        Assert.Equal(MstatusBits.SPIE, rig.X(R.S3) & (MstatusBits.SPIE | MstatusBits.SIE));
        Assert.Equal(9UL, rig.State.Mcause);
    }

    [Fact]
    public void MachineInterrupt_NotTakenInMWhileMieIsClear_ButTakenInS()
    {
        // Pending MTIP with mstatus.MIE = 0: M ignores it, but dropping to S (lower privilege) takes it.
        using var rig = new Rig();
        var p = Rig.NewProgram().OpenPmp();
        Label s = p.NewLabel(), handler = p.NewLabel();
        p.La(R.T0, handler).Emit(Asm.Csrw(Csr.Mtvec, R.T0))
            .Li(R.S2, Priv.ClintMtimecmp).Emit(Asm.Sd(R.Zero, R.S2, 0)) // mtimecmp = 0: pending now
            .Li(R.T0, Irq.MTIP).Emit(Asm.Csrs(Csr.Mie, R.T0));
        for (int i = 0; i < 20; i++)
        {
            p.Emit(Asm.Addi(R.A0, R.A0, 1));
        }

        p.EnterMode(PrivilegeMode.Supervisor, s);
        p.Bind(s);
        p.Emit(Asm.Addi(R.A1, R.A1, 1)).Halt();
        p.Align(4).Bind(handler);
        p.Emit(Asm.Csrr(R.S4, Csr.Mcause), Asm.Csrr(R.S5, Csr.Mepc)).Exit();
        rig.Load(p).RunToExit();

        Assert.Equal(20UL, rig.X(R.A0));
        Assert.Equal(InterruptBit | 7, rig.X(R.S4));
        Assert.Equal(s.Address, rig.X(R.S5));
        Assert.Equal(0UL, rig.X(R.A1));
        Assert.Equal(1UL, (rig.State.Mstatus >> MstatusBits.MppShift) & 3);
    }
}
