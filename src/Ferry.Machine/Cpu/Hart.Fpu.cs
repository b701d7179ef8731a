using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Ferry.Machine.Memory;

namespace Ferry.Machine.Cpu;

// F and D: the FP register file, fcsr, mstatus.FS and the executor of every FP instruction.
// FP instructions are dispatched out of line from the loop (one call per instruction): their
// arithmetic is SoftFloat.cs (the host FPU for round-to-nearest-even when the flags can be
// derived exactly, else the soft-float; exact in every rounding mode and flag either way), and
// their loads and stores take the same TLB fast path and slow paths as integer ones, so the
// page facts (accessed, dirty, populated, code) stay exact.
//
// mstatus.FS: Off makes every FP instruction and the FP CSRs illegal (mtval = the instruction
// bits). Writing an f register, or accruing an exception flag, sets FS = Dirty; SD reads as
// FS == Dirty. (QEMU 7.2 marks Dirty on f-register and fcsr writes only: an instruction that
// only raises flags, such as feq on a signalling NaN, leaves FS as it was there. The spec
// counts fflags as FP state, so Ferry marks it; software sees it only when FS was Initial or Clean.)
public sealed unsafe partial class Hart
{
    /// <summary>f0..f31 (64 bits each; single-precision values NaN-boxed).</summary>
    private readonly ulong[] _f = new ulong[32];

    /// <summary>fcsr.fflags (NV DZ OF UF NX in bits 4:0).</summary>
    private uint _fflags;

    /// <summary>fcsr.frm (3 bits; 5..7 make dynamic-rounding instructions illegal).</summary>
    private uint _frm;

    private const ulong FsDirty = MstatusBits.FS;

    private bool FpEnabled => (_mstatus & MstatusBits.FS) != 0;

    public ulong GetFRegister(int index) => _f[index];

    public void SetFRegister(int index, ulong value) => _f[index] = value;

    /// <summary>fcsr = frm (7:5) | fflags (4:0).</summary>
    public uint Fcsr => (_frm << 5) | _fflags;

    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool ExecuteFp(ref DecodedInsn d, long n)
    {
        if (!FpEnabled)
        {
            return Fail(TrapCause.IllegalInstruction, d.Raw);
        }

        int rd = d.Rd & 31;
        ref ulong f = ref MemoryMarshal.GetArrayDataReference(_f);
        ulong a = Unsafe.Add(ref f, d.Rs1 & 31);
        ulong b = Unsafe.Add(ref f, d.Rs2 & 31);
        switch (d.Op)
        {
            case Op.Flw or Op.Fld:
            {
                int size = d.Op == Op.Flw ? 4 : 8;
                ulong va = _x[d.Rs1] + (ulong)(long)d.Imm;
                TlbEntry* e = _rtlb + ((va >> 12) & TlbMask);
                ulong v;
                if (e->Tag == va >> 12 && (va & 0xFFF) <= (ulong)(GuestMemory.PageSize - size))
                {
                    v = size == 4 ? Unsafe.ReadUnaligned<uint>((byte*)(e->Addend + (long)va)) : Unsafe.ReadUnaligned<ulong>((byte*)(e->Addend + (long)va));
                }
                else if (!LoadSlow(va, size, n, out v))
                {
                    return false;
                }

                WriteF(rd, size == 4 ? SoftFloat.Box(v) : v);
                return true;
            }

            case Op.Fsw or Op.Fsd:
            {
                int size = d.Op == Op.Fsw ? 4 : 8;
                ulong va = _x[d.Rs1] + (ulong)(long)d.Imm;
                ulong v = size == 4 ? (uint)b : b;
                TlbEntry* e = _wtlb + ((va >> 12) & TlbMask);
                if (e->Tag == va >> 12 && (va & 0xFFF) <= (ulong)(GuestMemory.PageSize - size))
                {
                    if (size == 4)
                    {
                        Unsafe.WriteUnaligned((byte*)(e->Addend + (long)va), (uint)v);
                    }
                    else
                    {
                        Unsafe.WriteUnaligned((byte*)(e->Addend + (long)va), v);
                    }

                    return true;
                }

                return StoreSlow(va, size, v, n);
            }

            // ---- no rounding mode
            case Op.FsgnjS or Op.FsgnjnS or Op.FsgnjxS:
            {
                ulong x = SoftFloat.Unbox(a), y = SoftFloat.Unbox(b);
                ulong sign = d.Op switch
                {
                    Op.FsgnjS => y,
                    Op.FsgnjnS => ~y,
                    _ => x ^ y,
                } & 0x8000_0000UL;
                WriteF(rd, SoftFloat.Box((x & 0x7FFF_FFFFUL) | sign));
                return true;
            }

            case Op.FsgnjD or Op.FsgnjnD or Op.FsgnjxD:
            {
                ulong sign = d.Op switch
                {
                    Op.FsgnjD => b,
                    Op.FsgnjnD => ~b,
                    _ => a ^ b,
                } & (1UL << 63);
                WriteF(rd, (a & ~(1UL << 63)) | sign);
                return true;
            }

            case Op.FminS or Op.FmaxS:
            {
                uint fl = 0;
                ulong r = d.Op == Op.FminS
                    ? SoftFloat.Min(SoftFloat.Unbox(a), SoftFloat.Unbox(b), SoftFloat.S, ref fl)
                    : SoftFloat.Max(SoftFloat.Unbox(a), SoftFloat.Unbox(b), SoftFloat.S, ref fl);
                Accrue(fl);
                WriteF(rd, SoftFloat.Box(r));
                return true;
            }

            case Op.FminD or Op.FmaxD:
            {
                uint fl = 0;
                ulong r = d.Op == Op.FminD ? SoftFloat.Min(a, b, SoftFloat.D, ref fl) : SoftFloat.Max(a, b, SoftFloat.D, ref fl);
                Accrue(fl);
                WriteF(rd, r);
                return true;
            }

            case Op.FeqS or Op.FltS or Op.FleS:
            {
                uint fl = 0;
                ulong x = SoftFloat.Unbox(a), y = SoftFloat.Unbox(b);
                bool r = d.Op switch
                {
                    Op.FeqS => SoftFloat.Eq(x, y, SoftFloat.S, ref fl),
                    Op.FltS => SoftFloat.Lt(x, y, SoftFloat.S, ref fl),
                    _ => SoftFloat.Le(x, y, SoftFloat.S, ref fl),
                };
                Accrue(fl);
                _x[d.Rd] = r ? 1UL : 0UL;
                return true;
            }

            case Op.FeqD or Op.FltD or Op.FleD:
            {
                uint fl = 0;
                bool r = d.Op switch
                {
                    Op.FeqD => SoftFloat.Eq(a, b, SoftFloat.D, ref fl),
                    Op.FltD => SoftFloat.Lt(a, b, SoftFloat.D, ref fl),
                    _ => SoftFloat.Le(a, b, SoftFloat.D, ref fl),
                };
                Accrue(fl);
                _x[d.Rd] = r ? 1UL : 0UL;
                return true;
            }

            case Op.FclassS:
                _x[d.Rd] = SoftFloat.Classify(SoftFloat.Unbox(a), SoftFloat.S);
                return true;
            case Op.FclassD:
                _x[d.Rd] = SoftFloat.Classify(a, SoftFloat.D);
                return true;
            case Op.FmvXW:
                _x[d.Rd] = (ulong)(long)(int)(uint)a;
                return true;
            case Op.FmvXD:
                _x[d.Rd] = a;
                return true;
            case Op.FmvWX:
                WriteF(rd, SoftFloat.Box(_x[d.Rs1]));
                return true;
            case Op.FmvDX:
                WriteF(rd, _x[d.Rs1]);
                return true;
        }

        // ---- everything else has a rounding mode: static, or dynamic (7) from frm; 5 and 6 are reserved
        int rm = (d.Imm >> 8) & 7;
        if (rm == 7)
        {
            rm = (int)_frm;
        }

        if (rm > SoftFloat.Rmm)
        {
            return Fail(TrapCause.IllegalInstruction, d.Raw);
        }

        uint flags = 0;
        ulong c = Unsafe.Add(ref f, d.Imm & 31);
        if (rm == SoftFloat.Rne && TryArithRne(d.Op, a, b, c, rd, ref flags))
        {
            Accrue(flags);
            return true;
        }

        switch (d.Op)
        {
            case Op.FaddS: WriteS(rd, SoftFloat.Add(SoftFloat.Unbox(a), SoftFloat.Unbox(b), SoftFloat.S, rm, ref flags)); break;
            case Op.FsubS: WriteS(rd, SoftFloat.Sub(SoftFloat.Unbox(a), SoftFloat.Unbox(b), SoftFloat.S, rm, ref flags)); break;
            case Op.FmulS: WriteS(rd, SoftFloat.Mul(SoftFloat.Unbox(a), SoftFloat.Unbox(b), SoftFloat.S, rm, ref flags)); break;
            case Op.FdivS: WriteS(rd, SoftFloat.Div(SoftFloat.Unbox(a), SoftFloat.Unbox(b), SoftFloat.S, rm, ref flags)); break;
            case Op.FsqrtS: WriteS(rd, SoftFloat.Sqrt(SoftFloat.Unbox(a), SoftFloat.S, rm, ref flags)); break;
            case Op.FaddD: WriteF(rd, SoftFloat.Add(a, b, SoftFloat.D, rm, ref flags)); break;
            case Op.FsubD: WriteF(rd, SoftFloat.Sub(a, b, SoftFloat.D, rm, ref flags)); break;
            case Op.FmulD: WriteF(rd, SoftFloat.Mul(a, b, SoftFloat.D, rm, ref flags)); break;
            case Op.FdivD: WriteF(rd, SoftFloat.Div(a, b, SoftFloat.D, rm, ref flags)); break;
            case Op.FsqrtD: WriteF(rd, SoftFloat.Sqrt(a, SoftFloat.D, rm, ref flags)); break;

            case Op.FmaddS or Op.FmsubS or Op.FnmsubS or Op.FnmaddS:
                WriteS(rd, SoftFloat.MulAdd(
                    SoftFloat.Unbox(a), SoftFloat.Unbox(b), SoftFloat.Unbox(c),
                    negateProduct: d.Op is Op.FnmsubS or Op.FnmaddS, negateC: d.Op is Op.FmsubS or Op.FnmaddS,
                    SoftFloat.S, rm, ref flags));
                break;
            case Op.FmaddD or Op.FmsubD or Op.FnmsubD or Op.FnmaddD:
                WriteF(rd, SoftFloat.MulAdd(
                    a, b, c,
                    negateProduct: d.Op is Op.FnmsubD or Op.FnmaddD, negateC: d.Op is Op.FmsubD or Op.FnmaddD,
                    SoftFloat.D, rm, ref flags));
                break;

            case Op.FcvtWS: _x[d.Rd] = SoftFloat.ToInt(SoftFloat.Unbox(a), SoftFloat.S, word: true, unsigned: false, rm, ref flags); break;
            case Op.FcvtWuS: _x[d.Rd] = SoftFloat.ToInt(SoftFloat.Unbox(a), SoftFloat.S, word: true, unsigned: true, rm, ref flags); break;
            case Op.FcvtLS: _x[d.Rd] = SoftFloat.ToInt(SoftFloat.Unbox(a), SoftFloat.S, word: false, unsigned: false, rm, ref flags); break;
            case Op.FcvtLuS: _x[d.Rd] = SoftFloat.ToInt(SoftFloat.Unbox(a), SoftFloat.S, word: false, unsigned: true, rm, ref flags); break;
            case Op.FcvtWD: _x[d.Rd] = SoftFloat.ToInt(a, SoftFloat.D, word: true, unsigned: false, rm, ref flags); break;
            case Op.FcvtWuD: _x[d.Rd] = SoftFloat.ToInt(a, SoftFloat.D, word: true, unsigned: true, rm, ref flags); break;
            case Op.FcvtLD: _x[d.Rd] = SoftFloat.ToInt(a, SoftFloat.D, word: false, unsigned: false, rm, ref flags); break;
            case Op.FcvtLuD: _x[d.Rd] = SoftFloat.ToInt(a, SoftFloat.D, word: false, unsigned: true, rm, ref flags); break;

            case Op.FcvtSW: WriteS(rd, SoftFloat.FromInt(_x[d.Rs1], word: true, unsigned: false, SoftFloat.S, rm, ref flags)); break;
            case Op.FcvtSWu: WriteS(rd, SoftFloat.FromInt(_x[d.Rs1], word: true, unsigned: true, SoftFloat.S, rm, ref flags)); break;
            case Op.FcvtSL: WriteS(rd, SoftFloat.FromInt(_x[d.Rs1], word: false, unsigned: false, SoftFloat.S, rm, ref flags)); break;
            case Op.FcvtSLu: WriteS(rd, SoftFloat.FromInt(_x[d.Rs1], word: false, unsigned: true, SoftFloat.S, rm, ref flags)); break;
            case Op.FcvtDW: WriteF(rd, SoftFloat.FromInt(_x[d.Rs1], word: true, unsigned: false, SoftFloat.D, rm, ref flags)); break;
            case Op.FcvtDWu: WriteF(rd, SoftFloat.FromInt(_x[d.Rs1], word: true, unsigned: true, SoftFloat.D, rm, ref flags)); break;
            case Op.FcvtDL: WriteF(rd, SoftFloat.FromInt(_x[d.Rs1], word: false, unsigned: false, SoftFloat.D, rm, ref flags)); break;
            case Op.FcvtDLu: WriteF(rd, SoftFloat.FromInt(_x[d.Rs1], word: false, unsigned: true, SoftFloat.D, rm, ref flags)); break;

            case Op.FcvtSD: WriteS(rd, SoftFloat.Convert(a, SoftFloat.D, SoftFloat.S, rm, ref flags)); break;
            case Op.FcvtDS: WriteF(rd, SoftFloat.Convert(SoftFloat.Unbox(a), SoftFloat.S, SoftFloat.D, rm, ref flags)); break;

            default:
                ThrowUnhandled(d.Op);
                break;
        }

        Accrue(flags);
        return true;
    }

    /// <summary>Round-to-nearest-even arithmetic on the host FPU, when its flags can be derived exactly.</summary>
    private bool TryArithRne(Op op, ulong a, ulong b, ulong c, int rd, ref uint flags)
    {
        ulong r;
        switch (op)
        {
            case Op.FmaddD or Op.FmsubD or Op.FnmsubD or Op.FnmaddD:
                if (!SoftFloat.TryMulAddDRne(a, b, c, op is Op.FnmsubD or Op.FnmaddD, op is Op.FmsubD or Op.FnmaddD, out r, ref flags))
                {
                    return false;
                }

                break;
            case Op.FmaddS or Op.FmsubS or Op.FnmsubS or Op.FnmaddS:
                if (!SoftFloat.TryMulAddSRne(
                    SoftFloat.Unbox(a), SoftFloat.Unbox(b), SoftFloat.Unbox(c), op is Op.FnmsubS or Op.FnmaddS, op is Op.FmsubS or Op.FnmaddS, out r, ref flags))
                {
                    return false;
                }

                r = SoftFloat.Box(r);
                break;
            case Op.FaddD or Op.FsubD:
                if (!SoftFloat.TryAddDRne(a, b, op == Op.FsubD, out r, ref flags))
                {
                    return false;
                }

                break;
            case Op.FmulD:
                if (!SoftFloat.TryMulDRne(a, b, out r, ref flags))
                {
                    return false;
                }

                break;
            case Op.FdivD:
                if (!SoftFloat.TryDivDRne(a, b, out r, ref flags))
                {
                    return false;
                }

                break;
            case Op.FsqrtD:
                if (!SoftFloat.TrySqrtDRne(a, out r, ref flags))
                {
                    return false;
                }

                break;
            case Op.FaddS or Op.FsubS or Op.FmulS or Op.FdivS or Op.FsqrtS:
                if (!SoftFloat.TryArithSRne(op - Op.FaddS, SoftFloat.Unbox(a), SoftFloat.Unbox(b), out r, ref flags))
                {
                    return false;
                }

                r = SoftFloat.Box(r);
                break;
            default:
                return false;
        }

        WriteF(rd, r);
        return true;
    }

    private void WriteF(int rd, ulong value)
    {
        _f[rd] = value;
        _mstatus |= FsDirty;
    }

    private void WriteS(int rd, ulong single) => WriteF(rd, SoftFloat.Box(single));

    private void Accrue(uint flags)
    {
        if (flags != 0)
        {
            _fflags |= flags;
            _mstatus |= FsDirty;
        }
    }
}
