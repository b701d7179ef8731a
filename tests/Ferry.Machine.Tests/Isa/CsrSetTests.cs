using Ferry.Machine.Cpu;
using Ferry.Machine.Tests.Support;

namespace Ferry.Machine.Tests.Isa;

/// <summary>
/// The set of CSRs the hart implements, as firmware probes it (OpenSBI reads a CSR and catches
/// the illegal-instruction trap): what a QEMU 7.2 rv64 virt hart has and Ferry implements must
/// read, everything else must trap with the instruction in mtval. Also Zicntr's time = mtime
/// and satp's WARL MODE.
/// </summary>
public sealed class CsrSetTests : IDisposable
{
    private readonly InsnBench _bench = new();

    public void Dispose() => _bench.Dispose();

    [Theory]
    [InlineData(0x600)] // hstatus (H is not implemented)
    [InlineData(0x680)] // hgatp
    [InlineData(0x200)] // vsstatus
    [InlineData(0x34A)] // mtinst (H)
    [InlineData(0x34B)] // mtval2 (H)
    [InlineData(0x14D)] // stimecmp (Sstc is not implemented)
    [InlineData(0x747)] // mseccfg (Smepmp)
    [InlineData(0x015)] // seed (Zkr)
    [InlineData(0x008)] // vstart (V)
    [InlineData(0xC20)] // vl (V)
    [InlineData(0x7A0)] // tselect (debug triggers)
    [InlineData(0x7B0)] // dcsr (debug mode)
    [InlineData(0xDA0)] // scountovf (Sscofpmf)
    [InlineData(0x310)] // mstatush (RV32 only)
    [InlineData(0x31A)] // menvcfgh (RV32 only)
    [InlineData(0xC80)] // cycleh (RV32 only)
    [InlineData(0xC81)] // timeh
    [InlineData(0xB80)] // mcycleh
    [InlineData(0x3A1)] // pmpcfg1 (RV64 has only the even ones)
    [InlineData(0x3A4)] // pmpcfg4 (16 PMP entries)
    [InlineData(0x3C0)] // pmpaddr16
    [InlineData(0x001)] // fflags while mstatus.FS = Off
    [InlineData(0x003)] // fcsr while mstatus.FS = Off
    public void UnimplementedCsr_IsIllegal(int csr)
    {
        uint insn = Asm.Csrr(R.A0, csr);
        var (cause, tval, _) = _bench.Trap(insn);
        Assert.Equal(2UL, cause);
        Assert.Equal(insn, tval);
    }

    [Theory]
    [InlineData(Csr.Mcounteren)]
    [InlineData(Csr.Mcountinhibit)]
    [InlineData(Csr.Menvcfg)]
    [InlineData(Csr.Senvcfg)]
    [InlineData(Csr.Scounteren)]
    [InlineData(Csr.Mconfigptr)]
    [InlineData(Csr.Mvendorid)]
    [InlineData(Csr.Marchid)]
    [InlineData(Csr.Mimpid)]
    [InlineData(Csr.Mhartid)]
    [InlineData(Csr.Pmpcfg0)]
    [InlineData(Csr.Pmpcfg0 + 2)]
    [InlineData(Csr.Pmpaddr0 + 15)]
    [InlineData(Csr.Mhpmcounter3)]
    [InlineData(Csr.Mhpmcounter31)]
    [InlineData(Csr.Mhpmevent3)]
    [InlineData(Csr.Mhpmevent31)]
    [InlineData(Csr.Cycle)]
    [InlineData(Csr.Time)]
    [InlineData(Csr.Instret)]
    [InlineData(Csr.Hpmcounter3)]
    public void ProbedCsr_ReadsInMachineMode(int csr) => _bench.Step(Asm.Csrr(R.A0, csr));

    [Fact]
    public void HpmCounters_ReadZero_AndIgnoreWrites()
    {
        _bench.Rig.SetX(R.A1, 12345);
        _bench.Step(Asm.Csrrw(R.Zero, Csr.Mhpmcounter3 + 4, R.A1));
        _bench.Step(Asm.Csrrw(R.Zero, Csr.Mhpmevent3 + 4, R.A1));
        Assert.Equal(0UL, _bench.Exec(Asm.Csrr(R.A0, Csr.Mhpmcounter3 + 4), 0));
        Assert.Equal(0UL, _bench.Exec(Asm.Csrr(R.A0, Csr.Mhpmevent3 + 4), 0));
    }

    [Fact]
    public void Time_IsTheClintsMtime_InIcountMode()
    {
        Rig rig = _bench.Rig;
        var program = Rig.NewProgram();
        for (int i = 0; i < 200; i++)
        {
            program.Emit(Asm.Nop());
        }

        rig.Load(program);
        rig.Step(137);
        Assert.True(rig.Hart.TryReadCsr(Csr.Time, out ulong time));
        Assert.Equal(rig.Machine.Clock.MTime, time);
        Assert.Equal(rig.Hart.VirtualClock / 10, time - rig.Machine.Clock.SaveState().Offset);
    }

    [Theory]
    [InlineData(9UL)]  // Sv48
    [InlineData(10UL)] // Sv57
    [InlineData(1UL)]  // reserved
    public void SatpWrite_WithAnUnsupportedMode_IsIgnoredWhole(ulong mode)
    {
        Rig rig = _bench.Rig;
        rig.SetCsr(Csr.Satp, (8UL << 60) | 0x1234);
        rig.SetX(R.A1, (mode << 60) | 0x5678);
        _bench.Step(Asm.Csrrw(R.Zero, Csr.Satp, R.A1));
        Assert.Equal((8UL << 60) | 0x1234, rig.Csr(Csr.Satp));
        rig.SetCsr(Csr.Satp, 0);
    }
}
