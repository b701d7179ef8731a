using Ferry.Machine.Cpu;
using Ferry.Machine.Memory;
using Ferry.Machine.Tests.Support;
using static Ferry.Machine.Tests.Support.PageTables;

namespace Ferry.Machine.Tests.Privileged;

/// <summary>
/// Sv39 with page tables built in RAM by the test. Address space:
///   VA 0x8000_0000 (1 GiB leaf) = PA 0x8000_0000, S only: the program and identity access to RAM
///   VA 0x0000_0000 (1 GiB leaf) = PA 0x8000_0000, U: the same program as user code
///   VA 0x4000_0000 + k*4 KiB: 4 KiB test pages over PA Rig.Data + k*4 KiB, flags per test
/// Traps go to M (not delegated unless a test says so); the M handler exits.
/// </summary>
public sealed class Sv39Tests : IDisposable
{
    private const ulong UserOffset = 0x8000_0000;
    private const ulong TestVa = 0x4000_0000;
    private readonly Rig _rig = new();
    private readonly PageTables _pt;

    public Sv39Tests()
    {
        _pt = new PageTables(_rig);
        _pt.MapGiga(0x8000_0000, 0x8000_0000, Rwx);
        _pt.MapGiga(0x0, 0x8000_0000, Rwx | U);
    }

    public void Dispose() => _rig.Dispose();

    private static ulong Va(int page) => TestVa + ((ulong)page << 12);

    private static ulong Pa(int page) => Rig.Data + ((ulong)page << 12);

    /// <summary>M prologue (PMP, satp, extra mstatus bits, delegation), then <paramref name="body"/> in <paramref name="mode"/>.</summary>
    private ProgramBuilder Program(PrivilegeMode mode, Action<ProgramBuilder> body, ulong mstatusBits = 0, ulong medeleg = 0, Action<ProgramBuilder>? sHandler = null)
    {
        var p = Rig.NewProgram().OpenPmp();
        Label start = p.NewLabel(), handler = p.NewLabel();
        if (mstatusBits != 0)
        {
            p.Li(R.T0, mstatusBits).Emit(Asm.Csrs(Csr.Mstatus, R.T0));
        }

        if (medeleg != 0)
        {
            p.CsrWrite(Csr.Medeleg, medeleg).La(R.T0, handler).Emit(Asm.Csrw(Csr.Stvec, R.T0));
        }

        p.CsrWrite(Csr.Satp, _pt.Satp).Emit(Asm.SfenceVma())
            .EnterMode(mode, start, mode == PrivilegeMode.User ? UserOffset : 0);
        p.Bind(start);
        body(p);
        p.Emit(Asm.Ecall());
        p.Align(4).Bind(handler);
        sHandler?.Invoke(p);
        p.Emit(Asm.Ecall());
        _rig.Load(p);
        return p;
    }

    [Theory]
    [InlineData(PrivilegeMode.Supervisor)]
    [InlineData(PrivilegeMode.User)]
    public void LoadsAndStores_GoThroughThePageTable(PrivilegeMode mode)
    {
        ulong flags = V | Rd | Wr | A | D | (mode == PrivilegeMode.User ? U : 0);
        _pt.Map4K(Va(0), Pa(5), flags);
        _pt.Map4K(Va(1), Pa(3), flags);
        _rig.WriteU64(Pa(5) + 8, 0xFEED_FACE_CAFE_BEEF);
        _rig.Memory.WritePhysical(Pa(5) + 0xFFE, [0x11, 0x22]);
        _rig.Memory.WritePhysical(Pa(3), [0x33, 0x44, 0x55, 0x66, 0x77, 0x88]);
        _rig.Memory.WritePhysical(Pa(6), [0xEE, 0xEE, 0xEE, 0xEE, 0xEE, 0xEE]);
        Program(mode, p => p
            .Li(R.A1, Va(0)).Emit(Asm.Ld(R.A0, R.A1, 8))
            .Li(R.A2, 0x1234).Emit(Asm.Sd(R.A2, R.A1, 16))
            .Li(R.A3, Va(1) + 0xFFC).Emit(Asm.Sw(R.A2, R.A3, 0))
            .Li(R.A3, Va(0) + 0xFFE).Emit(Asm.Ld(R.A4, R.A3, 0))); // misaligned, across two mappings
        _rig.RunToExit();

        Assert.Equal(mode == PrivilegeMode.User ? 8UL : 9UL, _rig.State.Mcause);
        Assert.Equal(0xFEED_FACE_CAFE_BEEFUL, _rig.X(R.A0));
        Assert.Equal(0x1234UL, _rig.ReadU64(Pa(5) + 16));
        Assert.Equal(0x1234U, _rig.ReadU32(Pa(3) + 0xFFC));
        // The misaligned load's second half comes from the next *virtual* page's frame (Pa(3)), not Pa(6).
        Assert.Equal(0x8877_6655_4433_2211UL, _rig.X(R.A4));
    }

    public static TheoryData<string, PrivilegeMode, ulong, ulong> Faults => new()
    {
        // name, mode, leaf flags of the test page (0 = unmapped), expected cause
        { "load unmapped", PrivilegeMode.Supervisor, 0, 13 },
        { "store unmapped", PrivilegeMode.Supervisor, 0, 15 },
        { "fetch unmapped", PrivilegeMode.Supervisor, 0, 12 },
        { "store read-only", PrivilegeMode.Supervisor, V | Rd | A | D, 15 },
        { "fetch no-exec", PrivilegeMode.Supervisor, V | Rd | Wr | A | D, 12 },
        { "load execute-only", PrivilegeMode.Supervisor, V | Ex | A, 13 },
        { "load write-only (reserved)", PrivilegeMode.Supervisor, V | Wr | A | D, 13 },
        { "load user page from S", PrivilegeMode.Supervisor, V | Rd | Wr | U | A | D, 13 },
        { "fetch user page from S", PrivilegeMode.Supervisor, V | Rd | Ex | U | A, 12 },
        { "load supervisor page from U", PrivilegeMode.User, V | Rd | Wr | A | D, 13 },
        { "store supervisor page from U", PrivilegeMode.User, V | Rd | Wr | A | D, 15 },
        { "fetch supervisor page from U", PrivilegeMode.User, V | Rd | Ex | A, 12 },
        { "load reserved high bits", PrivilegeMode.Supervisor, V | Rd | A | (1UL << 60), 13 },
    };

    [Theory]
    [MemberData(nameof(Faults))]
    public void PageFaults_HaveTheRightCauseAndTval(string name, PrivilegeMode mode, ulong flags, ulong cause)
    {
        if (flags != 0)
        {
            _pt.Map4K(Va(2), Pa(2), flags);
        }
        else
        {
            _pt.Map4K(Va(3), Pa(3), V | Rd | A); // a neighbour, so the L0 table exists
        }

        ulong va = Va(2) + 0x18;
        Label faulting = new();
        ProgramBuilder p = Program(mode, b =>
        {
            b.Li(R.A1, va);
            b.Bind(faulting);
            if (name.StartsWith("load", StringComparison.Ordinal))
            {
                b.Emit(Asm.Ld(R.A0, R.A1, 0));
            }
            else if (name.StartsWith("store", StringComparison.Ordinal))
            {
                b.Emit(Asm.Sd(R.A1, R.A1, 0));
            }
            else
            {
                b.Emit(Asm.Jalr(R.Ra, R.A1, 0));
            }
        });
        _rig.RunToExit();

        HartState s = _rig.State;
        Assert.True(cause == s.Mcause, $"{name}: mcause {s.Mcause}, expected {cause}");
        Assert.Equal(va, s.Mtval);
        ulong expectedEpc = name.StartsWith("fetch", StringComparison.Ordinal) ? va
            : faulting.Address!.Value - (mode == PrivilegeMode.User ? UserOffset : 0);
        Assert.Equal(expectedEpc, s.Mepc);
        Assert.Equal((ulong)mode, (s.Mstatus >> MstatusBits.MppShift) & 3);
        Assert.Equal(0UL, _rig.ReadU64(Pa(2) + 0x18)); // a faulting store wrote nothing
        Assert.True(p.Size > 0);
    }

    [Fact]
    public void NonCanonicalAddress_IsAPageFault()
    {
        const ulong Bad = 0x0000_0080_0000_0000; // bit 39 set, bits 63:40 clear
        Program(PrivilegeMode.Supervisor, p => p.Li(R.A1, Bad).Emit(Asm.Lw(R.A0, R.A1, 4)));
        _rig.RunToExit();
        Assert.Equal(13UL, _rig.State.Mcause);
        Assert.Equal(Bad + 4, _rig.State.Mtval);
    }

    [Fact]
    public void MisalignedSuperpage_IsAPageFault()
    {
        _pt.MapGiga(0xC000_0000, 0x8020_0000, V | Rd | Wr | A | D); // PPN not 1 GiB aligned
        Program(PrivilegeMode.Supervisor, p => p.Li(R.A1, 0xC000_0040).Emit(Asm.Ld(R.A0, R.A1, 0)));
        _rig.RunToExit();
        Assert.Equal(13UL, _rig.State.Mcause);
        Assert.Equal(0xC000_0040UL, _rig.State.Mtval);
    }

    [Fact]
    public void AccessedAndDirtyBits_AreSetByTheHart_AndThePteWriteIsLogged()
    {
        ulong pte = _pt.Map4K(Va(4), Pa(4), V | Rd | Wr);
        Program(PrivilegeMode.Supervisor, p => p
            .Li(R.A1, Va(4)).Li(R.S0, pte)
            .Emit(Asm.Ld(R.S1, R.S0, 0))       // PTE before any access (identity mapping of RAM)
            .Emit(Asm.Ld(R.A0, R.A1, 0))
            .Emit(Asm.Ld(R.S2, R.S0, 0))       // after a load
            .Emit(Asm.Sd(R.A1, R.A1, 8))
            .Emit(Asm.Ld(R.S3, R.S0, 0)));     // after a store
        _rig.Memory.CollectDirtyLog(new PageBitmap(_rig.Memory.PageCount));
        _rig.RunToExit();

        Assert.Equal(0UL, _rig.X(R.S1) & (A | D));
        Assert.Equal(A, _rig.X(R.S2) & (A | D));
        Assert.Equal(A | D, _rig.X(R.S3) & (A | D));
        Assert.Equal(A | D, _rig.ReadU64(pte) & (A | D));
        Assert.Equal(Va(4), _rig.ReadU64(Pa(4) + 8));

        var dirty = new PageBitmap(_rig.Memory.PageCount);
        _rig.Memory.CollectDirtyLog(dirty);
        Assert.True(dirty.Get(Rig.PageOf(pte)), "the hart's A/D update of the PTE was not logged as a write");
        Assert.True(dirty.Get(Rig.PageOf(Pa(4))));
    }

    [Fact]
    public void Sum_LetsSupervisorReadUserPages()
    {
        _pt.Map4K(Va(5), Pa(5), V | Rd | Wr | U | A | D);
        _rig.WriteU64(Pa(5), 0x5555);
        Program(PrivilegeMode.Supervisor, p => p
            .Li(R.T0, MstatusBits.SUM).Emit(Asm.Csrs(Csr.Sstatus, R.T0))
            .Li(R.A1, Va(5)).Emit(Asm.Ld(R.A0, R.A1, 0))
            .Li(R.T0, MstatusBits.SUM).Emit(Asm.Csrc(Csr.Sstatus, R.T0))
            .Emit(Asm.Ld(R.A2, R.A1, 0)));    // faults again without SUM (the TLB must not keep the old permission)
        _rig.RunToExit();
        Assert.Equal(0x5555UL, _rig.X(R.A0));
        Assert.Equal(13UL, _rig.State.Mcause);
    }

    [Fact]
    public void Mxr_MakesExecuteOnlyPagesReadable()
    {
        _pt.Map4K(Va(6), Pa(6), V | Ex | A);
        _rig.WriteU64(Pa(6), 0x6666);
        Program(PrivilegeMode.Supervisor, p => p
            .Li(R.T0, MstatusBits.MXR).Emit(Asm.Csrs(Csr.Sstatus, R.T0))
            .Li(R.A1, Va(6)).Emit(Asm.Ld(R.A0, R.A1, 0)));
        _rig.RunToExit();
        Assert.Equal(0x6666UL, _rig.X(R.A0));
        Assert.Equal(9UL, _rig.State.Mcause);
    }

    [Fact]
    public void SfenceVma_MakesAChangedPteVisible()
    {
        ulong pte = _pt.Map4K(Va(7), Pa(7), V | Rd | Wr | A | D);
        _rig.WriteU64(Pa(7), 0x7777);
        _rig.WriteU64(Pa(8), 0x8888);
        Program(PrivilegeMode.Supervisor, p => p
            .Li(R.A1, Va(7)).Emit(Asm.Ld(R.A0, R.A1, 0))            // fills the TLB
            .Li(R.S0, pte).Li(R.T0, Pte(Pa(8), V | Rd | Wr | A | D)).Emit(Asm.Sd(R.T0, R.S0, 0))
            .Emit(Asm.SfenceVma(R.A1, R.Zero))
            .Emit(Asm.Ld(R.A2, R.A1, 0)));
        _rig.RunToExit();
        Assert.Equal(0x7777UL, _rig.X(R.A0));
        Assert.Equal(0x8888UL, _rig.X(R.A2));
    }

    [Fact]
    public void DelegatedPageFault_GoesToTheSupervisorHandler()
    {
        Program(PrivilegeMode.User,
            p => p.Li(R.A1, Va(9) + 0x44).Emit(Asm.Sw(R.A1, R.A1, 0)),
            medeleg: 1UL << 15,
            sHandler: h => h.Emit(Asm.Csrr(R.S1, Csr.Scause), Asm.Csrr(R.S2, Csr.Stval), Asm.Csrr(R.S3, Csr.Sstatus)));
        _rig.RunToExit();
        Assert.Equal(15UL, _rig.X(R.S1));
        Assert.Equal(Va(9) + 0x44, _rig.X(R.S2));
        Assert.Equal(0UL, _rig.X(R.S3) & MstatusBits.SPP);
        Assert.Equal(9UL, _rig.State.Mcause); // the S handler's own ecall
    }

    [Theory]
    [InlineData(V | Rd | A | D, 15UL)]      // readable, not writable: the store half faults
    [InlineData(V | Ex | A, 13UL)]          // execute-only: the load half faults first (as QEMU 7.2)
    [InlineData(V | Rd | Wr | A | D, 9UL)]  // allowed: reaches the ecall
    public void Amo_ChecksLoadThenStorePermission(ulong flags, ulong cause)
    {
        _pt.Map4K(Va(10), Pa(10), flags);
        _rig.WriteU64(Pa(10), 40);
        Program(PrivilegeMode.Supervisor, p => p
            .Li(R.A1, Va(10)).Li(R.A2, 2).Emit(Asm.Amo(Asm.AmoAdd, true, R.A0, R.A1, R.A2)));
        _rig.RunToExit();
        Assert.Equal(cause, _rig.State.Mcause);
        Assert.Equal(cause == 9 ? 42UL : 40UL, _rig.ReadU64(Pa(10)));
        if (cause != 9)
        {
            Assert.Equal(Va(10), _rig.State.Mtval);
        }
    }

    [Fact]
    public void UnsupportedSatpMode_IsIgnored()
    {
        Program(PrivilegeMode.Machine, p => p
            .Li(R.T0, (9UL << 60) | 0x1234).Emit(Asm.Csrw(Csr.Satp, R.T0), Asm.Csrr(R.A0, Csr.Satp)));
        _rig.RunToExit();
        Assert.Equal(_pt.Satp, _rig.X(R.A0));
    }
}

public sealed class PmpTests
{
    [Fact]
    public void WithoutAnyPmpEntry_SupervisorIsDenied_AsOnQemu()
    {
        using var rig = new Rig();
        var p = Rig.NewProgram();
        Label s = p.NewLabel();
        p.EnterMode(PrivilegeMode.Supervisor, s);
        p.Bind(s);
        p.Emit(Asm.Addi(R.A0, R.Zero, 1), Asm.Ecall());
        rig.Load(p).RunToExit();
        Assert.Equal(1UL, rig.State.Mcause); // instruction access fault
        Assert.Equal(s.Address, rig.State.Mepc);
        Assert.Equal(0UL, rig.X(R.A0));
    }

    [Fact]
    public void PmpEntryWithoutRead_DeniesSupervisorLoads()
    {
        using var rig = new Rig();
        var p = Rig.NewProgram()
            .CsrWrite(Csr.Pmpaddr0, ulong.MaxValue >> 10).CsrWrite(Csr.Pmpcfg0, 0x18 | 4); // NAPOT, X only
        Label s = p.NewLabel();
        p.EnterMode(PrivilegeMode.Supervisor, s);
        p.Bind(s);
        p.Li(R.A1, Rig.Data).Emit(Asm.Ld(R.A0, R.A1, 0), Asm.Ecall());
        rig.Load(p).RunToExit();
        Assert.Equal(5UL, rig.State.Mcause);
        Assert.Equal(Rig.Data, rig.State.Mtval);
    }

    [Fact]
    public void TorEntry_ProtectsOnlyItsRange()
    {
        // Entry 0: TOR [0, Data) RWX. Entry 1: TOR [Data, Data+4K) read-only. Entry 2: NAPOT all, RWX.
        using var rig = new Rig();
        var p = Rig.NewProgram()
            .CsrWrite(Csr.Pmpaddr0, Rig.Data >> 2)
            .CsrWrite(Csr.Pmpaddr0 + 1, (Rig.Data + 0x1000) >> 2)
            .CsrWrite(Csr.Pmpaddr0 + 2, ulong.MaxValue >> 10)
            .CsrWrite(Csr.Pmpcfg0, 0x0F | (0x09UL << 8) | (0x1FUL << 16));
        Label s = p.NewLabel();
        p.EnterMode(PrivilegeMode.Supervisor, s);
        p.Bind(s);
        p.Li(R.A1, Rig.Data + 0x1000).Emit(Asm.Sd(R.A1, R.A1, 0))   // entry 2: allowed
            .Li(R.A1, Rig.Data + 0x10).Emit(Asm.Ld(R.A0, R.A1, 0))  // entry 1: read allowed
            .Emit(Asm.Sd(R.A1, R.A1, 0), Asm.Ecall());               // entry 1: write denied
        rig.Load(p).RunToExit();
        Assert.Equal(7UL, rig.State.Mcause);
        Assert.Equal(Rig.Data + 0x10, rig.State.Mtval);
        Assert.Equal(Rig.Data + 0x1000, rig.ReadU64(Rig.Data + 0x1000));
    }
}
