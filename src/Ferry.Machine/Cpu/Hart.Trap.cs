using System.Numerics;
using System.Runtime.CompilerServices;

namespace Ferry.Machine.Cpu;

// Traps, interrupts, xRET, WFI, SFENCE.VMA, the A extension's memory side, and state save/restore.
public sealed unsafe partial class Hart
{
    /// <summary>Interrupt priority order of the privileged spec: MEI, MSI, MTI, SEI, SSI, STI.</summary>
    private static readonly int[] InterruptPriority = [Irq.MEI, Irq.MSI, Irq.MTI, Irq.SEI, Irq.SSI, Irq.STI];

    /// <summary>Enters the trap handler and returns the new pc.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private ulong EnterTrap(TrapCause cause, ulong tval, ulong pc, bool interrupt) => EnterTrap((int)cause, tval, pc, interrupt);

    private ulong EnterTrap(int cause, ulong tval, ulong pc, bool interrupt)
    {
        ulong deleg = interrupt ? _mideleg : _medeleg;
        ulong causeValue = (uint)cause | (interrupt ? 1UL << 63 : 0);
        ulong target;
        if (_priv <= PrivilegeMode.Supervisor && ((deleg >> cause) & 1) != 0)
        {
            _scause = causeValue;
            _sepc = pc;
            _stval = tval;
            ulong s = _mstatus & ~(MstatusBits.SPP | MstatusBits.SPIE | MstatusBits.SIE);
            if (_priv == PrivilegeMode.Supervisor)
            {
                s |= MstatusBits.SPP;
            }

            if ((_mstatus & MstatusBits.SIE) != 0)
            {
                s |= MstatusBits.SPIE;
            }

            _mstatus = s;
            _priv = PrivilegeMode.Supervisor;
            target = TrapVector(_stvec, cause, interrupt);
        }
        else
        {
            _mcause = causeValue;
            _mepc = pc;
            _mtval = tval;
            ulong m = _mstatus & ~(MstatusBits.MPP | MstatusBits.MPIE | MstatusBits.MIE);
            m |= (ulong)_priv << MstatusBits.MppShift;
            if ((_mstatus & MstatusBits.MIE) != 0)
            {
                m |= MstatusBits.MPIE;
            }

            _mstatus = m;
            _priv = PrivilegeMode.Machine;
            target = TrapVector(_mtvec, cause, interrupt);
        }

        _reservation = NoReservation;
        UpdateTlbPointers();
        return target;
    }

    private static ulong TrapVector(ulong tvec, int cause, bool interrupt)
    {
        ulong baseAddr = tvec & ~3UL;
        return interrupt && (tvec & 3) == 1 ? baseAddr + (4 * (ulong)cause) : baseAddr;
    }

    /// <summary>Takes the highest-priority pending, enabled interrupt, if any (between runs).</summary>
    private void TakePendingInterrupt()
    {
        ulong pending = Mip & _mie;
        if (pending == 0)
        {
            return;
        }

        bool mEnabled = _priv < PrivilegeMode.Machine || (_mstatus & MstatusBits.MIE) != 0;
        bool sEnabled = _priv < PrivilegeMode.Supervisor || (_priv == PrivilegeMode.Supervisor && (_mstatus & MstatusBits.SIE) != 0);
        ulong takeable = (mEnabled ? pending & ~_mideleg : 0) | (sEnabled ? pending & _mideleg : 0);
        if (takeable == 0)
        {
            return;
        }

        // M-level interrupts come before S-level ones, then the fixed priority order.
        ulong mLevel = takeable & ~_mideleg;
        ulong set = mLevel != 0 ? mLevel : takeable;
        foreach (int irq in InterruptPriority)
        {
            if ((set & (1UL << irq)) != 0)
            {
                _pc = EnterTrap(irq, 0, _pc, interrupt: true);
                return;
            }
        }
    }

    /// <summary>True if an interrupt is pending and enabled in mie (what wakes WFI).</summary>
    public bool InterruptPendingForWfi => (Mip & _mie) != 0;

    /// <summary>MRET/SRET: returns the new pc, or ulong.MaxValue if the instruction is illegal here.</summary>
    private ulong ExecuteReturn(Op op)
    {
        ulong target;
        if (op == Op.Mret)
        {
            if (_priv != PrivilegeMode.Machine)
            {
                return ulong.MaxValue;
            }

            var mpp = (PrivilegeMode)((_mstatus >> MstatusBits.MppShift) & 3);
            ulong m = _mstatus & ~(MstatusBits.MPP | MstatusBits.MIE);
            if ((_mstatus & MstatusBits.MPIE) != 0)
            {
                m |= MstatusBits.MIE;
            }

            m |= MstatusBits.MPIE;
            if (mpp != PrivilegeMode.Machine)
            {
                m &= ~MstatusBits.MPRV;
            }

            _mstatus = m;
            _priv = mpp;
            target = _mepc;
        }
        else
        {
            if (_priv < PrivilegeMode.Supervisor || (_priv == PrivilegeMode.Supervisor && (_mstatus & MstatusBits.TSR) != 0))
            {
                return ulong.MaxValue;
            }

            var spp = (_mstatus & MstatusBits.SPP) != 0 ? PrivilegeMode.Supervisor : PrivilegeMode.User;
            ulong s = _mstatus & ~(MstatusBits.SPP | MstatusBits.SIE | MstatusBits.MPRV);
            if ((_mstatus & MstatusBits.SPIE) != 0)
            {
                s |= MstatusBits.SIE;
            }

            s |= MstatusBits.SPIE;
            _mstatus = s;
            _priv = spp;
            target = _sepc;
        }

        UpdateTlbPointers();
        EndRun();
        return target;
    }

    /// <summary>WFI: false if illegal here (U-mode, or S-mode with TW, as QEMU).</summary>
    private bool ExecuteWfi()
    {
        if (_priv == PrivilegeMode.User || (_priv == PrivilegeMode.Supervisor && (_mstatus & MstatusBits.TW) != 0))
        {
            return false;
        }

        if (!InterruptPendingForWfi)
        {
            _wfi = true;
        }

        EndRun();
        return true;
    }

    private bool ExecuteSfenceVma()
    {
        if (_priv == PrivilegeMode.User || (_priv == PrivilegeMode.Supervisor && (_mstatus & MstatusBits.TVM) != 0))
        {
            return false;
        }

        FlushAll();
        EndRun();
        return true;
    }

    /// <summary>LR, SC and the AMOs. Only aligned RAM accesses are atomic; others trap.</summary>
    private bool ExecuteAtomic(ref DecodedInsn d, long n)
    {
        bool word = Rv64A.IsWord(d.Op);
        int size = word ? 4 : 8;
        ulong va = _x[d.Rs1];
        switch (d.Op)
        {
            case Op.LrW or Op.LrD:
            {
                if (!ResolveAtomic(va, size, Access.Read, n, out byte* host))
                {
                    return false;
                }

                _x[d.Rd] = word ? (ulong)(long)*(int*)host : *(ulong*)host;
                _reservation = va;
                return true;
            }

            case Op.ScW or Op.ScD:
            {
                // As QEMU 7.2: the address is compared with the reservation first, so an SC without a
                // matching reservation fails (rd = 1) without touching memory or trapping, even when
                // misaligned or unmapped. Any SC clears the reservation.
                if (_reservation != va)
                {
                    _reservation = NoReservation;
                    _x[d.Rd] = 1;
                    return true;
                }

                _reservation = NoReservation;
                if (!ResolveAtomic(va, size, Access.Write, n, out byte* host))
                {
                    return false;
                }

                if (word)
                {
                    *(uint*)host = (uint)_x[d.Rs2];
                }
                else
                {
                    *(ulong*)host = _x[d.Rs2];
                }

                _x[d.Rd] = 0;
                return true;
            }

            default:
            {
                if (!ResolveAtomic(va, size, Access.Write, n, out byte* host))
                {
                    return false;
                }

                ulong operand = _x[d.Rs2];
                if (word)
                {
                    ulong old = (ulong)(long)*(int*)host;
                    *(uint*)host = (uint)Rv64A.Apply(d.Op, old, operand);
                    _x[d.Rd] = old;
                }
                else
                {
                    ulong old = *(ulong*)host;
                    *(ulong*)host = Rv64A.Apply(d.Op, old, operand);
                    _x[d.Rd] = old;
                }

                return true;
            }
        }
    }

    /// <summary>Captures the architectural state (call between runs).</summary>
    public HartState SaveState()
    {
        var x = new ulong[32];
        Array.Copy(_x, x, 32);
        return new HartState
        {
            Pc = _pc,
            X = x,
            Privilege = _priv,
            InstructionsRetired = _instret,
            CounterOffset = _counterOffset,
            VirtualClock = _vclock,
            WaitingForInterrupt = _wfi,
            Reservation = _reservation,
            Mstatus = _mstatus,
            Medeleg = _medeleg,
            Mideleg = _mideleg,
            Mie = _mie,
            MipSoftware = _mipSoftware,
            Mtvec = _mtvec,
            Mscratch = _mscratch,
            Mepc = _mepc,
            Mcause = _mcause,
            Mtval = _mtval,
            Mcounteren = _mcounteren,
            Menvcfg = _menvcfg,
            Mcountinhibit = _mcountinhibit,
            Stvec = _stvec,
            Sscratch = _sscratch,
            Sepc = _sepc,
            Scause = _scause,
            Stval = _stval,
            Scounteren = _scounteren,
            Senvcfg = _senvcfg,
            Satp = _satp,
            PmpCfg = _pmp.SaveCfg(),
            PmpAddr = _pmp.SaveAddr(),
            F = (ulong[])_f.Clone(),
            Fcsr = Fcsr,
        };
    }

    /// <summary>Rebuilds the hart from saved state (call between runs). Validates what it can.</summary>
    public void RestoreState(HartState s)
    {
        if (s.X.Length != 32 || s.X[0] != 0)
        {
            throw new ArgumentException("hart state: x must hold 32 registers with x0 = 0");
        }

        if (s.F.Length != 32 || s.Fcsr > 0xFF)
        {
            throw new ArgumentException("hart state: f must hold 32 registers and fcsr 8 bits");
        }

        if (s.Privilege is not (PrivilegeMode.User or PrivilegeMode.Supervisor or PrivilegeMode.Machine))
        {
            throw new ArgumentException($"hart state: invalid privilege {(int)s.Privilege}");
        }

        Array.Copy(s.X, _x, 32);
        _x[DecodedInsn.SinkRegister] = 0;
        _pc = s.Pc;
        _priv = s.Privilege;
        _instret = s.InstructionsRetired;
        _counterOffset = s.CounterOffset;
        _vclock = s.VirtualClock;
        _wfi = s.WaitingForInterrupt;
        _reservation = s.Reservation;
        _mstatus = s.Mstatus & (MstatusBits.Writable | MstatusBits.UBE);
        _medeleg = s.Medeleg & DelegableExceptions;
        _mideleg = s.Mideleg & Irq.SupervisorBits;
        _mie = s.Mie & Irq.All;
        _mipSoftware = s.MipSoftware & Irq.SupervisorBits;
        _mtvec = s.Mtvec;
        _mscratch = s.Mscratch;
        _mepc = s.Mepc;
        _mcause = s.Mcause;
        _mtval = s.Mtval;
        _mcounteren = s.Mcounteren;
        _menvcfg = s.Menvcfg;
        _mcountinhibit = s.Mcountinhibit;
        _stvec = s.Stvec;
        _sscratch = s.Sscratch;
        _sepc = s.Sepc;
        _scause = s.Scause;
        _stval = s.Stval;
        _scounteren = s.Scounteren;
        _senvcfg = s.Senvcfg;
        _satp = s.Satp;
        _pmp.Restore(s.PmpCfg, s.PmpAddr);
        Array.Copy(s.F, _f, 32);
        _fflags = s.Fcsr & 0x1F;
        _frm = s.Fcsr >> 5;
        FlushAll();
        UpdateTlbPointers();
        DropTranslations();
    }

    /// <summary>Number of distinct RAM pages holding decoded code (diagnostics).</summary>
    public int DecodedPageCount => _isCode.PopCount();

    internal static int HighestBit(ulong v) => 63 - BitOperations.LeadingZeroCount(v);
}
