namespace Ferry.Machine.Cpu;

// Zicsr and the CSR file. Unknown CSRs, writes to read-only CSRs and accesses above the
// current privilege raise illegal instruction. Writes that can change interrupt enables,
// translation or privilege end the run so the machine re-evaluates.
public sealed unsafe partial class Hart
{
    private ulong _mstatus;
    private ulong _medeleg;
    private ulong _mideleg;
    private ulong _mie;
    private ulong _mipSoftware;
    private ulong _mipLines;
    private ulong _mtvec;
    private ulong _mscratch;
    private ulong _mepc;
    private ulong _mcause;
    private ulong _mtval;
    private ulong _mcounteren;
    private ulong _menvcfg;
    private ulong _mcountinhibit;
    private ulong _stvec;
    private ulong _sscratch;
    private ulong _sepc;
    private ulong _scause;
    private ulong _stval;
    private ulong _scounteren;
    private ulong _senvcfg;
    private ulong _satp;

    /// <summary>RV64 (MXL=2) with A, C, D, F, I, M, S, U.</summary>
    public const ulong Misa = (2UL << 62) | (1UL << 0) | (1UL << 2) | (1UL << 3) | (1UL << 5) | (1UL << 8) | (1UL << 12) | (1UL << 18) | (1UL << 20);

    /// <summary>The exceptions medeleg can delegate (as QEMU 7.2's DELEGABLE_EXCPS).</summary>
    private const ulong DelegableExceptions = 0xF0_BFFF;

    private const ulong EnvcfgWritable = 1; // FIOM

    /// <summary>The mip value: device lines (MSIP, MTIP, MEIP, SEIP) and software bits.</summary>
    public ulong Mip => _mipLines | _mipSoftware;

    public ulong Mie => _mie;

    /// <summary>mstatus as read: the stored fields, UXL/SXL, and SD = (FS == Dirty).</summary>
    public ulong Mstatus => _mstatus | MstatusBits.XlFields | ((_mstatus & MstatusBits.FS) == MstatusBits.FS ? MstatusBits.SD : 0);

    /// <summary>Devices drive their interrupt lines (e.g. the CLINT's MTIP and MSIP) here.</summary>
    public void SetInterruptLine(ulong bit, bool level)
    {
        if (level)
        {
            _mipLines |= bit;
        }
        else
        {
            _mipLines &= ~bit;
        }
    }

    private bool ExecuteCsr(ref DecodedInsn d, long n)
    {
        _progress = n;
        int csr = d.Imm & 0xFFF;
        bool immediate = d.Op is Op.Csrrwi or Op.Csrrsi or Op.Csrrci;
        ulong src = immediate ? d.Rs1 : GetRegister(d.Rs1);
        bool write = d.Op is Op.Csrrw or Op.Csrrwi || d.Rs1 != 0;

        if (((csr >> 8) & 3) > (int)_priv || (write && (csr >> 10) == 3) || !TryReadCsr(csr, out ulong old))
        {
            return Fail(TrapCause.IllegalInstruction, d.Raw);
        }

        if (write)
        {
            ulong basis = csr is Csr.Mip or Csr.Sip ? WritableMip(old) : old;
            ulong value = d.Op switch
            {
                Op.Csrrw or Op.Csrrwi => src,
                Op.Csrrs or Op.Csrrsi => basis | src,
                _ => basis & ~src,
            };
            if (!TryWriteCsr(csr, value))
            {
                return Fail(TrapCause.IllegalInstruction, d.Raw);
            }
        }

        _x[d.Rd] = old;
        return true;
    }

    /// <summary>
    /// What CSRRS/CSRRC on mip or sip modify: <paramref name="read"/> with the software-writable
    /// SEIP bit in place of the value read, which ORs in the PLIC's line (privileged spec,
    /// "Machine Interrupt Registers": only the software-writable SEIP bit participates in the
    /// read-modify-write; QEMU writes only the masked bits). Else an M-mode `csrs mip, STIP`
    /// (OpenSBI's timer handler) while the UART's interrupt is pending would latch SEIP in
    /// software, where S mode cannot clear it: a storm of external interrupts with nothing to claim.
    /// </summary>
    private ulong WritableMip(ulong read) => (read & ~Irq.SEIP) | (_mipSoftware & Irq.SEIP);

    private bool CounterEnabled(int csr)
    {
        int bit = csr & 31;
        if (_priv < PrivilegeMode.Machine && ((_mcounteren >> bit) & 1) == 0)
        {
            return false;
        }

        return _priv != PrivilegeMode.User || ((_scounteren >> bit) & 1) != 0;
    }

    internal bool TryReadCsr(int csr, out ulong value)
    {
        value = 0;
        switch (csr)
        {
            case Csr.Fflags: value = _fflags; return FpEnabled;
            case Csr.Frm: value = _frm; return FpEnabled;
            case Csr.Fcsr: value = Fcsr; return FpEnabled;
            case Csr.Mstatus: value = Mstatus; return true;
            case Csr.Sstatus: value = Mstatus & MstatusBits.SstatusMask; return true;
            case Csr.Misa: value = Misa; return true;
            case Csr.Medeleg: value = _medeleg; return true;
            case Csr.Mideleg: value = _mideleg; return true;
            case Csr.Mie: value = _mie; return true;
            case Csr.Sie: value = _mie & _mideleg; return true;
            case Csr.Mip: value = Mip; return true;
            case Csr.Sip: value = Mip & _mideleg; return true;
            case Csr.Mtvec: value = _mtvec; return true;
            case Csr.Stvec: value = _stvec; return true;
            case Csr.Mscratch: value = _mscratch; return true;
            case Csr.Sscratch: value = _sscratch; return true;
            case Csr.Mepc: value = _mepc; return true;
            case Csr.Sepc: value = _sepc; return true;
            case Csr.Mcause: value = _mcause; return true;
            case Csr.Scause: value = _scause; return true;
            case Csr.Mtval: value = _mtval; return true;
            case Csr.Stval: value = _stval; return true;
            case Csr.Mcounteren: value = _mcounteren; return true;
            case Csr.Scounteren: value = _scounteren; return true;
            case Csr.Menvcfg: value = _menvcfg; return true;
            case Csr.Senvcfg: value = _senvcfg; return true;
            case Csr.Mcountinhibit: value = _mcountinhibit; return true;
            case Csr.Satp:
                if (_priv == PrivilegeMode.Supervisor && (_mstatus & MstatusBits.TVM) != 0)
                {
                    return false;
                }

                value = _satp;
                return true;
            case Csr.Mcycle:
            case Csr.Minstret:
                value = _instret + (ulong)_progress + _counterOffset;
                return true;
            case Csr.Cycle:
            case Csr.Instret:
                value = _instret + (ulong)_progress + _counterOffset;
                return CounterEnabled(csr);
            case Csr.Time:
                value = _bus.ReadTime();
                return CounterEnabled(csr);
            case Csr.Mvendorid:
            case Csr.Marchid:
            case Csr.Mimpid:
            case Csr.Mconfigptr:
                return true;
            case Csr.Mhartid:
                value = HartId;
                return true;
            case Csr.Pmpcfg0:
                value = _pmp.ReadCfg(0);
                return true;
            case Csr.Pmpcfg0 + 2:
                value = _pmp.ReadCfg(2);
                return true;
            case >= Csr.Pmpaddr0 and < Csr.Pmpaddr0 + Pmp.Entries:
                value = _pmp.ReadAddr(csr - Csr.Pmpaddr0);
                return true;
            case >= Csr.Mhpmcounter3 and <= Csr.Mhpmcounter31:
            case >= Csr.Mhpmevent3 and <= Csr.Mhpmevent31:
                return true;
            case >= Csr.Hpmcounter3 and <= Csr.Hpmcounter31:
                return CounterEnabled(csr);
            default:
                return false;
        }
    }

    internal bool TryWriteCsr(int csr, ulong value)
    {
        switch (csr)
        {
            // The FP CSRs exist only while FS != Off (checked by the read that precedes every write).
            case Csr.Fflags:
                _fflags = (uint)value & 0x1F;
                _mstatus |= FsDirty;
                return true;
            case Csr.Frm:
                _frm = (uint)value & 7;
                _mstatus |= FsDirty;
                return true;
            case Csr.Fcsr:
                _fflags = (uint)value & 0x1F;
                _frm = ((uint)value >> 5) & 7;
                _mstatus |= FsDirty;
                return true;
            case Csr.Mstatus:
                WriteMstatus((_mstatus & ~MstatusBits.Writable) | (value & MstatusBits.Writable));
                return true;
            case Csr.Sstatus:
            {
                const ulong mask = MstatusBits.SIE | MstatusBits.SPIE | MstatusBits.SPP | MstatusBits.FS | MstatusBits.SUM | MstatusBits.MXR;
                WriteMstatus((_mstatus & ~mask) | (value & mask));
                return true;
            }

            case Csr.Misa:
                return true; // WARL: the extensions are fixed
            case Csr.Medeleg:
                _medeleg = value & DelegableExceptions;
                return true;
            case Csr.Mideleg:
                _mideleg = value & Irq.SupervisorBits;
                EndRun();
                return true;
            case Csr.Mie:
                _mie = value & Irq.All;
                EndRun();
                return true;
            case Csr.Sie:
                _mie = (_mie & ~_mideleg) | (value & _mideleg);
                EndRun();
                return true;
            case Csr.Mip:
                _mipSoftware = value & Irq.SupervisorBits;
                EndRun();
                return true;
            case Csr.Sip:
                _mipSoftware = (_mipSoftware & ~(_mideleg & Irq.SSIP)) | (value & _mideleg & Irq.SSIP);
                EndRun();
                return true;
            case Csr.Mtvec:
                if ((value & 3) < 2)
                {
                    _mtvec = value;
                }

                return true;
            case Csr.Stvec:
                if ((value & 3) < 2)
                {
                    _stvec = value;
                }

                return true;
            case Csr.Mscratch: _mscratch = value; return true;
            case Csr.Sscratch: _sscratch = value; return true;
            case Csr.Mepc: _mepc = value & ~1UL; return true;
            case Csr.Sepc: _sepc = value & ~1UL; return true;
            case Csr.Mcause: _mcause = value; return true;
            case Csr.Scause: _scause = value; return true;
            case Csr.Mtval: _mtval = value; return true;
            case Csr.Stval: _stval = value; return true;
            case Csr.Mcounteren: _mcounteren = value & 0xFFFF_FFFF; return true;
            case Csr.Scounteren: _scounteren = value & 0xFFFF_FFFF; return true;
            case Csr.Menvcfg: _menvcfg = value & EnvcfgWritable; return true;
            case Csr.Senvcfg: _senvcfg = value & EnvcfgWritable; return true;
            case Csr.Mcountinhibit: _mcountinhibit = value & 0xFFFF_FFFD; return true;
            case Csr.Satp:
            {
                if (_priv == PrivilegeMode.Supervisor && (_mstatus & MstatusBits.TVM) != 0)
                {
                    return false;
                }

                ulong mode = value >> 60;
                if (mode is 0 or 8)
                {
                    // Sv39 only; other modes are WARL-ignored. ASID is 16 bits, PPN 44.
                    _satp = value & ((0xFUL << 60) | (0xFFFFUL << 44) | PpnMask);
                    FlushAll();
                    EndRun();
                }

                return true;
            }

            case Csr.Mcycle:
            case Csr.Minstret:
                // The value read by the next instruction is the value written. Only the guest's
                // view moves: InstructionsRetired keeps counting what really retired.
                _counterOffset = value - (_instret + (ulong)_progress + 1);
                return true;
            case Csr.Pmpcfg0:
                _pmp.WriteCfg(0, value);
                FlushAll();
                return true;
            case Csr.Pmpcfg0 + 2:
                _pmp.WriteCfg(1, value);
                FlushAll();
                return true;
            case >= Csr.Pmpaddr0 and < Csr.Pmpaddr0 + Pmp.Entries:
                _pmp.WriteAddr(csr - Csr.Pmpaddr0, value);
                FlushAll();
                return true;
            case >= Csr.Mhpmcounter3 and <= Csr.Mhpmcounter31:
            case >= Csr.Mhpmevent3 and <= Csr.Mhpmevent31:
                return true;
            default:
                return false;
        }
    }

    private void WriteMstatus(ulong value)
    {
        // MPP is WARL over the implemented modes: the reserved value 2 becomes U.
        if (((value >> MstatusBits.MppShift) & 3) == 2)
        {
            value &= ~MstatusBits.MPP;
        }

        ulong changed = _mstatus ^ value;
        _mstatus = value;
        if ((changed & (MstatusBits.SUM | MstatusBits.MXR | MstatusBits.MPRV | MstatusBits.MPP)) != 0)
        {
            FlushAll();
            UpdateTlbPointers();
        }

        EndRun();
    }

    private void EndRun() => Volatile.Write(ref _budget, 0);
}
