using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Ferry.Machine.Memory;

namespace Ferry.Machine.Cpu;

/// <summary>
/// A software TLB entry: virtual page number -> host address offset (host = va + Addend).
/// For the fetch TLB, Addend is the RAM page frame index instead (its decode cache).
/// Invalid entries have Tag = ulong.MaxValue, which no canonical virtual page number equals.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal struct TlbEntry
{
    public ulong Tag;
    public long Addend;
}

// The MMU: Sv39 translation with hardware A/D updates, PMP, the TLB fill that maintains the
// page facts (accessed, dirty, populated, absent, code) and the slow paths of loads, stores
// and fetches. Only the slow paths touch GuestMemory's bitmaps.
public sealed unsafe partial class Hart
{
    internal const int TlbEntries = 1024;
    internal const ulong TlbMask = TlbEntries - 1;

    // Table layout: [mode: M, S, U][kind: read, write, fetch][TlbEntries].
    private const int KindRead = 0, KindWrite = 1, KindFetch = 2;
    private const int TableCount = 9;

    private readonly DecodedInsn[]?[] _codePages;
    private readonly PageBitmap _isCode;
    private readonly Pmp _pmp = new();
    private TlbEntry* _tlb;
    private TlbEntry* _rtlb;
    private TlbEntry* _wtlb;
    private TlbEntry* _ftlb;

    private const ulong PteV = 1, PteR = 2, PteW = 4, PteX = 8, PteU = 16, PteA = 64, PteD = 128;
    private const ulong PpnMask = (1UL << 44) - 1;

    private void AllocateTlb()
    {
        // Safety: freed in Dispose; the three working pointers always point inside it.
        _tlb = (TlbEntry*)NativeMemory.Alloc((nuint)(TableCount * TlbEntries), (nuint)sizeof(TlbEntry));
        FlushAll();
        UpdateTlbPointers();
    }

    private void FreeTlb()
    {
        if (_tlb != null)
        {
            NativeMemory.Free(_tlb);
            _tlb = null;
            _rtlb = _wtlb = _ftlb = null;
        }
    }

    private static int ModeIndex(PrivilegeMode mode) => mode switch
    {
        PrivilegeMode.Machine => 0,
        PrivilegeMode.Supervisor => 1,
        _ => 2,
    };

    /// <summary>The privilege that loads and stores use (mstatus.MPRV makes M-mode use MPP).</summary>
    private PrivilegeMode DataPrivilege
        => _priv == PrivilegeMode.Machine && (_mstatus & MstatusBits.MPRV) != 0
            ? (PrivilegeMode)((_mstatus >> MstatusBits.MppShift) & 3)
            : _priv;

    private void UpdateTlbPointers()
    {
        int data = ModeIndex(DataPrivilege) * 3;
        int fetch = ModeIndex(_priv) * 3;
        _rtlb = _tlb + ((data + KindRead) * TlbEntries);
        _wtlb = _tlb + ((data + KindWrite) * TlbEntries);
        _ftlb = _tlb + ((fetch + KindFetch) * TlbEntries);
    }

    public void FlushAll() => new Span<byte>(_tlb, TableCount * TlbEntries * sizeof(TlbEntry)).Fill(0xFF);

    public void FlushWritable()
    {
        for (int mode = 0; mode < 3; mode++)
        {
            new Span<byte>(_tlb + (((mode * 3) + KindWrite) * TlbEntries), TlbEntries * sizeof(TlbEntry)).Fill(0xFF);
        }
    }

    /// <summary>Drops the decoded instructions of a RAM page (it was written) and the fetch entries that point at it.</summary>
    public void InvalidateCode(int page)
    {
        if (!_isCode.Get(page))
        {
            return;
        }

        _isCode.Clear(page);
        _codePages[page] = null;
        if (_blocks.Length != 0)
        {
            _blocks[page] = null;
        }
        for (int mode = 0; mode < 3; mode++)
        {
            TlbEntry* t = _tlb + (((mode * 3) + KindFetch) * TlbEntries);
            for (int i = 0; i < TlbEntries; i++)
            {
                if (t[i].Tag != ulong.MaxValue && t[i].Addend == page)
                {
                    t[i].Tag = ulong.MaxValue;
                }
            }
        }

        // The run loop caches the current code page: end the run so it fetches again.
        Volatile.Write(ref _budget, 0);
    }

    /// <summary>Removes write entries that map to a RAM page (it became a code page).</summary>
    private void FlushWritableFor(int page)
    {
        long host = (long)(_ram.Host + ((long)page << GuestMemory.PageShift));
        for (int mode = 0; mode < 3; mode++)
        {
            TlbEntry* t = _tlb + (((mode * 3) + KindWrite) * TlbEntries);
            for (int i = 0; i < TlbEntries; i++)
            {
                if (t[i].Tag != ulong.MaxValue && t[i].Addend + (long)(t[i].Tag << 12) == host)
                {
                    t[i].Tag = ulong.MaxValue;
                }
            }
        }
    }

    private bool Fail(TrapCause cause, ulong tval)
    {
        _excCause = cause;
        _excTval = tval;
        return false;
    }

    private static TrapCause PageFault(Access access) => access switch
    {
        Access.Read => TrapCause.LoadPageFault,
        Access.Write => TrapCause.StorePageFault,
        _ => TrapCause.InstructionPageFault,
    };

    private static TrapCause AccessFault(Access access) => access switch
    {
        Access.Read => TrapCause.LoadAccessFault,
        Access.Write => TrapCause.StoreAccessFault,
        _ => TrapCause.InstructionAccessFault,
    };

    /// <summary>Waits for an absent RAM page; false (retry) if the wait was cancelled.</summary>
    private bool EnsurePresent(int page)
    {
        if (!_ram.Absent.Get(page))
        {
            return true;
        }

        if (_ram.WaitUntilPresent(page, StallCancellation))
        {
            return true;
        }

        _retry = true;
        return false;
    }

    /// <summary>
    /// Sv39 translation (or identity in M-mode and with satp.MODE = Bare). Sets A, and D for
    /// writes, in the leaf PTE as QEMU does (the PTE's page is then dirty like any other write).
    /// </summary>
    private bool Translate(ulong va, Access access, PrivilegeMode priv, out ulong pa)
    {
        pa = va;
        if (priv == PrivilegeMode.Machine || (_satp >> 60) == 0)
        {
            return true;
        }

        if (((long)va << 25 >> 25) != (long)va)
        {
            return Fail(PageFault(access), va);
        }

        ulong table = (_satp & PpnMask) << 12;
        for (int level = 2; level >= 0; level--)
        {
            ulong pteAddr = table + (((va >> (12 + (9 * level))) & 0x1FF) * 8);
            if (!_ram.Contains(pteAddr) || _pmp.Check(pteAddr, pteAddr + 7, Access.Read, PrivilegeMode.Supervisor) != Pmp.Result.Allow)
            {
                return Fail(AccessFault(access), va);
            }

            int ptePage = _ram.PageOf(pteAddr);
            if (!EnsurePresent(ptePage))
            {
                return false;
            }

            ulong* ptePtr = (ulong*)(_ram.Host + (pteAddr - _ram.BaseAddress));
            ulong pte = *ptePtr;
            if ((pte & PteV) == 0 || ((pte & PteR) == 0 && (pte & PteW) != 0) || (pte >> 54) != 0)
            {
                return Fail(PageFault(access), va);
            }

            if ((pte & (PteR | PteX)) == 0)
            {
                if (level == 0)
                {
                    return Fail(PageFault(access), va);
                }

                table = ((pte >> 10) & PpnMask) << 12;
                continue;
            }

            // Leaf: privilege and permission checks.
            bool user = (pte & PteU) != 0;
            if (priv == PrivilegeMode.User ? !user : user && (access == Access.Execute || (_mstatus & MstatusBits.SUM) == 0))
            {
                return Fail(PageFault(access), va);
            }

            bool allowed = access switch
            {
                Access.Read => (pte & PteR) != 0 || ((_mstatus & MstatusBits.MXR) != 0 && (pte & PteX) != 0),
                Access.Write => (pte & PteW) != 0,
                _ => (pte & PteX) != 0,
            };
            ulong ppn = (pte >> 10) & PpnMask;
            ulong superMask = (1UL << (9 * level)) - 1;
            if (!allowed || (ppn & superMask) != 0)
            {
                return Fail(PageFault(access), va);
            }

            ulong needed = PteA | (access == Access.Write ? PteD : 0);
            if ((pte & needed) != needed)
            {
                *ptePtr = pte | needed;
                _ram.NoteWrite(ptePage);
            }

            pa = (ppn << 12) | (va & ((1UL << (12 + (9 * level))) - 1));
            return true;
        }

        return Fail(PageFault(access), va);
    }

    /// <summary>
    /// Resolves a data access to RAM: translation, PMP, absent wait, page facts, TLB fill.
    /// Returns the host pointer for the access, or null for a device address (pa set).
    /// </summary>
    private bool ResolveData(ulong va, int size, Access access, out byte* host, out ulong pa)
    {
        host = null;
        PrivilegeMode priv = DataPrivilege;
        if (!Translate(va, access, priv, out pa))
        {
            return false;
        }

        Pmp.Result pmp = Pmp.Result.Allow;
        if (priv != PrivilegeMode.Machine || !_pmp.Inactive)
        {
            pmp = _pmp.Check(pa & ~GuestMemory.PageMask, pa | GuestMemory.PageMask, access, priv);
            if (pmp == Pmp.Result.Partial)
            {
                pmp = _pmp.Check(pa, pa + (ulong)size - 1, access, priv) == Pmp.Result.Allow ? Pmp.Result.Partial : Pmp.Result.Deny;
            }

            if (pmp == Pmp.Result.Deny)
            {
                return Fail(AccessFault(access), va);
            }
        }

        if (!_ram.Contains(pa))
        {
            return true;
        }

        int page = _ram.PageOf(pa);
        if (!EnsurePresent(page))
        {
            return false;
        }

        _ram.Accessed.Set(page);
        if (access == Access.Write)
        {
            _ram.Populated.Set(page);
            _ram.Dirty.Set(page);
            if (_isCode.Get(page))
            {
                InvalidateCode(page);
            }
        }

        byte* pageHost = _ram.Host + ((long)page << GuestMemory.PageShift);
        host = pageHost + (pa & GuestMemory.PageMask);
        if (pmp == Pmp.Result.Allow)
        {
            TlbEntry* e = (access == Access.Write ? _wtlb : _rtlb) + ((va >> 12) & TlbMask);
            e->Tag = va >> 12;
            e->Addend = (long)pageHost - (long)(va & ~GuestMemory.PageMask);
        }

        return true;
    }

    /// <summary>Reads 1, 2, 4 or 8 bytes of RAM at a host address (zero-extended).</summary>
    private static ulong ReadHost(byte* host, int size) => size switch
    {
        1 => *host,
        2 => Unsafe.ReadUnaligned<ushort>(host),
        4 => Unsafe.ReadUnaligned<uint>(host),
        _ => Unsafe.ReadUnaligned<ulong>(host),
    };

    /// <summary>Writes the low 1, 2, 4 or 8 bytes of a value to RAM at a host address.</summary>
    private static void WriteHost(byte* host, int size, ulong value)
    {
        switch (size)
        {
            case 1: *host = (byte)value; break;
            case 2: Unsafe.WriteUnaligned(host, (ushort)value); break;
            case 4: Unsafe.WriteUnaligned(host, (uint)value); break;
            default: Unsafe.WriteUnaligned(host, value); break;
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool LoadSlow(ulong va, int size, long n, out ulong value)
    {
        value = 0;
        _progress = n;
        if ((va & GuestMemory.PageMask) > (ulong)(GuestMemory.PageSize - size))
        {
            // Misaligned across a page boundary: byte by byte (QEMU allows misaligned accesses).
            for (int i = 0; i < size; i++)
            {
                if (!LoadSlow(va + (ulong)i, 1, n, out ulong b))
                {
                    return false;
                }

                value |= b << (8 * i);
            }

            return true;
        }

        if (!ResolveData(va, size, Access.Read, out byte* host, out ulong pa))
        {
            return false;
        }

        if (host != null)
        {
            value = ReadHost(host, size);
            return true;
        }

        return _bus.Read(pa, size, out value) || Fail(TrapCause.LoadAccessFault, va);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool StoreSlow(ulong va, int size, ulong value, long n)
    {
        _progress = n;
        if ((va & GuestMemory.PageMask) > (ulong)(GuestMemory.PageSize - size))
        {
            // Misaligned across a page boundary: check both pages first so a fault leaves memory untouched.
            // A fault on the second page reports its first byte (as QEMU 7.2).
            ulong second = (va | GuestMemory.PageMask) + 1;
            if (!ResolveData(va, 1, Access.Write, out _, out _) || !ResolveData(second, 1, Access.Write, out _, out _))
            {
                return false;
            }

            for (int i = 0; i < size; i++)
            {
                if (!StoreSlow(va + (ulong)i, 1, value >> (8 * i), n))
                {
                    return false;
                }
            }

            return true;
        }

        if (!ResolveData(va, size, Access.Write, out byte* host, out ulong pa))
        {
            return false;
        }

        if (host != null)
        {
            WriteHost(host, size, value);
            return true;
        }

        if (!_bus.Write(pa, size, value))
        {
            return Fail(TrapCause.StoreAccessFault, va);
        }

        // A device write may change interrupt lines, the timer deadline or stop the machine.
        Volatile.Write(ref _budget, 0);
        return true;
    }

    /// <summary>Translates a fetch and returns the decode cache of the RAM page (filling the fetch TLB).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private DecodedInsn[]? FetchSlow(ulong pc, long n, out int page)
    {
        page = 0;
        _progress = n;
        if (!Translate(pc, Access.Execute, _priv, out ulong pa))
        {
            return null;
        }

        if (!_ram.Contains(pa))
        {
            Fail(TrapCause.InstructionAccessFault, pc);
            return null;
        }

        Pmp.Result pmp = Pmp.Result.Allow;
        if (_priv != PrivilegeMode.Machine || !_pmp.Inactive)
        {
            pmp = _pmp.Check(pa & ~GuestMemory.PageMask, pa | GuestMemory.PageMask, Access.Execute, _priv);
            if (pmp == Pmp.Result.Partial)
            {
                // Code pages are decoded whole: a page only partly executable is refused.
                pmp = Pmp.Result.Deny;
            }

            if (pmp == Pmp.Result.Deny)
            {
                Fail(TrapCause.InstructionAccessFault, pc);
                return null;
            }
        }

        page = _ram.PageOf(pa);
        if (!EnsurePresent(page))
        {
            return null;
        }

        _ram.Accessed.Set(page);
        DecodedInsn[]? code = _codePages[page];
        if (code is null)
        {
            code = DecodedPagePool.Rent();
            _codePages[page] = code;
            _isCode.Set(page);
            FlushWritableFor(page);
        }

        TlbEntry* e = _ftlb + ((pc >> 12) & TlbMask);
        e->Tag = pc >> 12;
        e->Addend = page;
        return code;
    }

    /// <summary>Fetches and decodes a 32-bit instruction whose halves lie on two pages.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool FetchCrossPage(ulong pc, long n)
    {
        if (FetchSlow(pc, n, out int first) is null)
        {
            return false;
        }

        ulong low = *(ushort*)(_ram.Host + ((long)first << GuestMemory.PageShift) + (long)(pc & GuestMemory.PageMask));
        ulong next = pc + 2;
        if (FetchSlow(next, n, out int second) is null)
        {
            return false;
        }

        ulong high = *(ushort*)(_ram.Host + ((long)second << GuestMemory.PageShift));
        _crossPageInsn = Decoder.Decode32((uint)(low | (high << 16)));
        return true;
    }

    /// <summary>
    /// Host pointer for an aligned LR, SC or AMO in RAM; devices refuse atomics. QEMU 7.2 (one hart,
    /// TCG) performs these as a load followed by a store, so the load's checks come first and we
    /// match its causes: misaligned is a load address misaligned (4), outside RAM a load access
    /// fault (5), a page or PMP region without read permission a load fault; then the store's.
    /// </summary>
    private bool ResolveAtomic(ulong va, int size, Access access, long n, out byte* host)
    {
        _progress = n;
        host = null;
        if ((va & (ulong)(size - 1)) != 0)
        {
            return Fail(TrapCause.LoadAddressMisaligned, va);
        }

        if (!ResolveData(va, size, Access.Read, out host, out _))
        {
            return false;
        }

        if (host == null)
        {
            return Fail(TrapCause.LoadAccessFault, va);
        }

        return access == Access.Read || ResolveData(va, size, Access.Write, out host, out _);
    }
}
