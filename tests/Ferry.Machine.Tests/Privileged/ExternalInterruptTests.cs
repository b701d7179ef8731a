using Ferry.Machine.Board;
using Ferry.Machine.Cpu;
using Ferry.Machine.State;
using Ferry.Machine.Tests.Support;

namespace Ferry.Machine.Tests.Privileged;

/// <summary>The UART's interrupt through the PLIC to the hart: MEIP in M mode, SEIP delegated to S mode, and across a snapshot.</summary>
public sealed class ExternalInterruptTests
{
    private const ulong InterruptBit = 1UL << 63;
    private const ulong Uart = 0x1000_0000, Plic = 0x0C00_0000;
    private const ulong ClaimM = Plic + 0x20_0004, ClaimS = Plic + 0x20_1004;

    private static ProgramBuilder RouteUart(ProgramBuilder p, ulong enableWord)
        => p.Li(R.T0, Plic + (4 * VirtMachine.UartIrq)).Li(R.T1, 1).Emit(Asm.Sw(R.T1, R.T0, 0))
            .Li(R.T0, enableWord).Li(R.T1, 1UL << VirtMachine.UartIrq).Emit(Asm.Sw(R.T1, R.T0, 0));

    /// <summary>The handler: cause, claimed source, IIR, completion, then mip.</summary>
    private static ProgramBuilder Handle(ProgramBuilder p, int causeCsr, ulong claim)
        => p.Emit(Asm.Csrr(R.S4, causeCsr))
            .Li(R.T0, claim).Emit(Asm.Lw(R.S5, R.T0, 0))
            .Li(R.T1, Uart).Emit(Asm.Lbu(R.S6, R.T1, 2))
            .Emit(Asm.Sw(R.S5, R.T0, 0), Asm.Csrr(R.S7, Csr.Mip))
            .Exit();

    [Fact]
    public void ThrEmpty_ReachesMachineMode_AsMeip_RightAfterTheEnablingStore()
    {
        using var rig = new Rig();
        var p = Rig.NewProgram();
        Label handler = p.NewLabel(), loop = p.NewLabel();
        p.La(R.T0, handler).Emit(Asm.Csrw(Csr.Mtvec, R.T0));
        RouteUart(p, Plic + 0x2000);
        p.Li(R.T0, Irq.MEIP).Emit(Asm.Csrs(Csr.Mie, R.T0), Asm.Csrrsi(0, Csr.Mstatus, 8), Asm.Addi(R.A0, R.Zero, 0));
        p.Li(R.T0, Uart).Li(R.T1, 0x02).Emit(Asm.Sb(R.T1, R.T0, 1)); // IER.THRI
        p.Bind(loop);
        p.Emit(Asm.Addi(R.A0, R.A0, 1)).J(loop);
        p.Align(4).Bind(handler);
        Handle(p, Csr.Mcause, ClaimM);
        rig.Load(p).RunToExit();

        Assert.Equal(InterruptBit | Irq.MEI, rig.X(R.S4));
        Assert.Equal((ulong)VirtMachine.UartIrq, rig.X(R.S5));
        Assert.Equal(0x02UL, rig.X(R.S6)); // IIR: THR empty (FIFOs off)
        Assert.Equal(0UL, rig.X(R.S7) & (Irq.MEIP | Irq.SEIP));
        Assert.Equal(0UL, rig.X(R.A0)); // taken before the loop ran
    }

    [Fact]
    public void ThrEmpty_ReachesSupervisorMode_AsSeip_ThroughContext1()
    {
        using var rig = new Rig();
        var p = Rig.NewProgram();
        Label sCode = p.NewLabel(), sHandler = p.NewLabel(), loop = p.NewLabel();
        p.OpenPmp().CsrWrite(Csr.Mideleg, Irq.SEIP);
        RouteUart(p, Plic + 0x2080);
        p.EnterMode(PrivilegeMode.Supervisor, sCode);
        p.Bind(sCode);
        p.La(R.T0, sHandler).Emit(Asm.Csrw(Csr.Stvec, R.T0));
        p.Li(R.T0, Irq.SEIP).Emit(Asm.Csrs(Csr.Sie, R.T0), Asm.Csrrsi(0, Csr.Sstatus, 2));
        p.Li(R.T0, Uart).Li(R.T1, 0x02).Emit(Asm.Sb(R.T1, R.T0, 1));
        p.Bind(loop);
        p.J(loop);
        p.Align(4).Bind(sHandler);
        p.Emit(Asm.Csrr(R.S4, Csr.Scause))
            .Li(R.T0, ClaimS).Emit(Asm.Lw(R.S5, R.T0, 0))
            .Li(R.T1, Uart).Emit(Asm.Lbu(R.S6, R.T1, 2))
            .Emit(Asm.Sw(R.S5, R.T0, 0), Asm.Csrr(R.S7, Csr.Sip))
            .Exit();
        rig.Load(p).RunToExit();

        Assert.Equal(InterruptBit | Irq.SEI, rig.X(R.S4));
        Assert.Equal((ulong)VirtMachine.UartIrq, rig.X(R.S5));
        Assert.Equal(0x02UL, rig.X(R.S6));
        Assert.Equal(0UL, rig.X(R.S7) & Irq.SEIP);
        Assert.Equal(PrivilegeMode.Supervisor, rig.Hart.Privilege);
    }

    /// <summary>
    /// OpenSBI's timer handler sets STIP with `csrs mip` in M mode, at any moment, also while the
    /// PLIC drives SEIP for a pending UART interrupt. The set reads SEIP from the line but must not
    /// write it back into the software bit (only that bit takes part in the read-modify-write):
    /// once S mode claims the source, SEIP falls. (It used to stay set for good, and Linux took
    /// external interrupts with nothing to claim forever: typed input never reached the shell.)
    /// </summary>
    [Fact]
    public void CsrsMip_WhileThePlicDrivesSeip_DoesNotLatchIt()
    {
        using var rig = new Rig();
        var p = Rig.NewProgram();
        RouteUart(p, Plic + 0x2080);
        p.Li(R.T2, Uart).Li(R.T1, 0x02).Emit(Asm.Sb(R.T1, R.T2, 1)); // IER.THRI: the line, context 1, SEIP
        p.Li(R.T0, Irq.STIP).Emit(Asm.Csrrs(R.S4, Csr.Mip, R.T0), Asm.Csrr(R.S5, Csr.Mip));
        p.Li(R.T0, ClaimS).Emit(Asm.Lw(R.S6, R.T0, 0), Asm.Csrr(R.S7, Csr.Mip), Asm.Sw(R.S6, R.T0, 0));
        p.Li(R.T0, Irq.STIP).Emit(Asm.Csrrc(R.Zero, Csr.Mip, R.T0), Asm.Csrr(R.S8, Csr.Mip)).Exit();
        rig.Load(p).RunToExit();

        Assert.Equal(Irq.SEIP, rig.X(R.S4) & Irq.SupervisorBits); // the line, read
        Assert.Equal(Irq.SEIP | Irq.STIP, rig.X(R.S5) & Irq.SupervisorBits);
        Assert.Equal((ulong)VirtMachine.UartIrq, rig.X(R.S6));
        Assert.Equal(Irq.STIP, rig.X(R.S7) & Irq.SupervisorBits); // claimed: the line is low, SEIP with it
        Assert.Equal(0UL, rig.X(R.S8) & Irq.SupervisorBits);
    }

    /// <summary>
    /// A guest that lives on UART interrupts (each handler claims, reads IIR, sends a byte, which
    /// raises THR empty again, completes and returns). Snapshotting at every point of the handler
    /// and restoring continues exactly like the uninterrupted run: interrupt state crosses whole.
    /// </summary>
    [Fact]
    public void InterruptDrivenGuest_SnapshotAnywhere_ContinuesExactly()
    {
        ProgramBuilder Program()
        {
            var p = Rig.NewProgram();
            Label handler = p.NewLabel(), loop = p.NewLabel();
            p.La(R.T0, handler).Emit(Asm.Csrw(Csr.Mtvec, R.T0));
            RouteUart(p, Plic + 0x2000);
            p.Li(R.T0, Irq.MEIP).Emit(Asm.Csrs(Csr.Mie, R.T0), Asm.Csrrsi(0, Csr.Mstatus, 8));
            p.Li(R.T0, Uart).Li(R.T1, 0x02).Emit(Asm.Sb(R.T1, R.T0, 1));
            p.Bind(loop);
            p.Emit(Asm.Addi(R.A0, R.A0, 1)).J(loop);
            p.Align(4).Bind(handler);
            p.Li(R.T0, ClaimM).Emit(Asm.Lw(R.T1, R.T0, 0))
                .Li(R.T2, Uart).Emit(Asm.Lbu(R.T3, R.T2, 2))
                .Emit(Asm.Andi(R.T4, R.A0, 31), Asm.Addi(R.T4, R.T4, 'A'), Asm.Sb(R.T4, R.T2, 0))
                .Emit(Asm.Sw(R.T1, R.T0, 0), Asm.Mret());
            return p;
        }

        const ulong End = 6_000;
        string straightDigest;
        byte[] straightConsole;
        using (var rig = new Rig())
        {
            rig.Load(Program());
            Assert.Equal(RunOutcome.InstructionLimit, rig.Step((long)End));
            straightDigest = StateDigest.Compute(rig.Machine);
            straightConsole = rig.Machine.Console.Read(0).Bytes;
        }

        Assert.True(straightConsole.Length > 100, $"only {straightConsole.Length} interrupts");
        for (ulong at = 3_000; at < 3_030; at++)
        {
            byte[] snapshot, before;
            using (var rig = new Rig())
            {
                rig.Load(Program());
                rig.Step((long)at);
                using var stream = new MemoryStream();
                Snapshot.Save(rig.Machine, stream);
                snapshot = stream.ToArray();
                before = rig.Machine.Console.Read(0).Bytes;
            }

            using VirtMachine resumed = Snapshot.Load(snapshot);
            Assert.Equal(RunOutcome.InstructionLimit, resumed.Run(End));
            Assert.True(straightDigest == StateDigest.Compute(resumed), $"restored at {at}: the state differs from the straight run");
            byte[] joined = [.. before, .. resumed.Console.Read(0).Bytes];
            Assert.Equal(straightConsole, joined);
        }
    }

    /// <summary>The interrupt path (UART line, PLIC, mip, trap, claim, complete) allocates nothing once warm.</summary>
    [Fact]
    public void InterruptPath_AllocatesNothing()
    {
        using var rig = new Rig();
        var p = Rig.NewProgram();
        Label handler = p.NewLabel(), loop = p.NewLabel();
        p.La(R.T0, handler).Emit(Asm.Csrw(Csr.Mtvec, R.T0));
        RouteUart(p, Plic + 0x2000);
        p.Li(R.T0, Irq.MEIP).Emit(Asm.Csrs(Csr.Mie, R.T0), Asm.Csrrsi(0, Csr.Mstatus, 8));
        p.Li(R.T0, Uart).Li(R.T1, 0x02).Emit(Asm.Sb(R.T1, R.T0, 1));
        p.Bind(loop);
        p.Emit(Asm.Addi(R.A0, R.A0, 1)).J(loop);
        p.Align(4).Bind(handler);
        // Claim, read IIR (clears THR empty), toggle IER.THRI (raises it again), complete: no console output.
        p.Li(R.T0, ClaimM).Emit(Asm.Lw(R.T1, R.T0, 0))
            .Li(R.T2, Uart).Emit(Asm.Lbu(R.T3, R.T2, 2), Asm.Sb(R.Zero, R.T2, 1), Asm.Addi(R.T4, R.Zero, 2), Asm.Sb(R.T4, R.T2, 1))
            .Emit(Asm.Sw(R.T1, R.T0, 0), Asm.Addi(R.S2, R.S2, 1), Asm.Mret());
        rig.Load(p);
        rig.Step(20_000);
        // The rig's own bookkeeping per Step (its assertion message) is the same for a short and a
        // long step; the runtime may allocate once on this thread while it tiers code up, so the
        // check is that some round of 50,000 instructions (thousands of interrupts) allocates nothing.
        var rounds = new List<string>();
        for (int round = 0; round < 5; round++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            rig.Step(10);
            long perStep = GC.GetAllocatedBytesForCurrentThread() - before;
            ulong start = rig.X(R.S2);
            before = GC.GetAllocatedBytesForCurrentThread();
            rig.Step(50_000);
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before - perStep;
            Assert.True(rig.X(R.S2) - start > 1000, $"only {rig.X(R.S2) - start} interrupts handled");
            if (allocated == 0)
            {
                return;
            }

            rounds.Add($"{allocated} bytes over {rig.X(R.S2) - start} interrupts");
        }

        Assert.Fail("every round allocated: " + string.Join("; ", rounds));
    }

    /// <summary>Console input typed while the hart waits in WFI wakes it through RDI, the PLIC and MEIP.</summary>
    [Fact]
    public async Task HostInput_WakesAHartInWfi()
    {
        using var rig = new Rig();
        var p = Rig.NewProgram();
        Label wait = p.NewLabel();
        RouteUart(p, Plic + 0x2000);
        p.Li(R.T0, Irq.MEIP).Emit(Asm.Csrs(Csr.Mie, R.T0)); // mstatus.MIE stays off: WFI wakes, no trap
        p.Li(R.T2, Uart).Li(R.T1, 0x01).Emit(Asm.Sb(R.T1, R.T2, 1)); // IER.RDI
        p.Bind(wait);
        p.Emit(Asm.Wfi(), Asm.Lbu(R.T3, R.T2, 5), Asm.Andi(R.T3, R.T3, 1)).Emit(wait, off => Asm.Beq(R.T3, R.Zero, off));
        p.Li(R.T0, ClaimM).Emit(Asm.Lw(R.S5, R.T0, 0), Asm.Lbu(R.S6, R.T2, 0), Asm.Sw(R.S5, R.T0, 0)).Exit();
        rig.Load(p);

        Task run = Task.Run(() => rig.RunToExit(1_000_000));
        for (int i = 0; i < 500 && !rig.Machine.Hart.WaitingForInterrupt; i++)
        {
            await Task.Delay(10);
        }

        Assert.True(rig.Machine.Hart.WaitingForInterrupt, "the hart never reached WFI");
        await Task.Delay(150); // more idle passes: nothing but input may wake it
        Assert.False(run.IsCompleted);
        rig.Machine.Uart.EnqueueInput("Z"u8);
        await run.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal((ulong)VirtMachine.UartIrq, rig.X(R.S5));
        Assert.Equal((ulong)'Z', rig.X(R.S6));
    }
}
