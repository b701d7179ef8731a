using Ferry.Machine.Cpu;

namespace Ferry.Machine.Tests.Support;

/// <summary>M-mode prologue pieces: PMP, mode switches, CLINT addresses.</summary>
internal static class Priv
{
    public const ulong ClintMtimecmp = 0x0200_4000, ClintMtime = 0x0200_BFF8;

    /// <summary>
    /// One NAPOT PMP entry over the whole address space with RWX. Needed before S/U run: the hart
    /// denies S/U accesses that match no PMP entry, as QEMU does.
    /// </summary>
    public static ProgramBuilder OpenPmp(this ProgramBuilder p)
        => p.CsrWrite(Csr.Pmpaddr0, ulong.MaxValue >> 10).CsrWrite(Csr.Pmpcfg0, 0x1F);

    /// <summary>mret into <paramref name="mode"/> at <paramref name="target"/> (minus <paramref name="vaOffset"/>: its virtual address).</summary>
    public static ProgramBuilder EnterMode(this ProgramBuilder p, PrivilegeMode mode, Label target, ulong vaOffset = 0)
    {
        p.Li(R.T0, MstatusBits.MPP).Emit(Asm.Csrc(Csr.Mstatus, R.T0));
        if (mode != PrivilegeMode.User)
        {
            p.Li(R.T0, (ulong)mode << MstatusBits.MppShift).Emit(Asm.Csrs(Csr.Mstatus, R.T0));
        }

        p.La(R.T0, target);
        if (vaOffset != 0)
        {
            p.Li(R.T1, vaOffset).Emit(Asm.Sub(R.T0, R.T0, R.T1));
        }

        return p.Emit(Asm.Csrw(Csr.Mepc, R.T0), Asm.Mret());
    }
}

/// <summary>Sv39 page tables written into guest RAM by the test (the hart only reads them, and sets A/D).</summary>
internal sealed class PageTables
{
    public const ulong V = 1, Rd = 2, Wr = 4, Ex = 8, U = 16, G = 32, A = 64, D = 128;
    public const ulong Rwx = V | Rd | Wr | Ex | A | D;

    private readonly Rig _rig;
    private ulong _next;

    public PageTables(Rig rig, ulong root = Rig.Tables)
    {
        _rig = rig;
        Root = root;
        _next = root + 0x1000;
    }

    public ulong Root { get; }

    public ulong Satp => (8UL << 60) | (Root >> 12);

    public static ulong Pte(ulong pa, ulong flags) => ((pa >> 12) << 10) | flags;

    /// <summary>A 1 GiB leaf in the root table.</summary>
    public void MapGiga(ulong va, ulong pa, ulong flags) => _rig.WriteU64(Root + (((va >> 30) & 0x1FF) * 8), Pte(pa, flags));

    /// <summary>A 4 KiB leaf (intermediate tables are created on demand); returns the leaf PTE's address.</summary>
    public ulong Map4K(ulong va, ulong pa, ulong flags)
    {
        ulong table = Root;
        for (int level = 2; level > 0; level--)
        {
            ulong slot = table + (((va >> (12 + (9 * level))) & 0x1FF) * 8);
            ulong pte = _rig.ReadU64(slot);
            if ((pte & V) == 0)
            {
                ulong fresh = _next;
                _next += 0x1000;
                _rig.Memory.WritePhysical(fresh, new byte[0x1000]);
                _rig.WriteU64(slot, Pte(fresh, V));
                table = fresh;
            }
            else
            {
                table = (pte >> 10) << 12;
            }
        }

        ulong leaf = table + (((va >> 12) & 0x1FF) * 8);
        _rig.WriteU64(leaf, Pte(pa, flags));
        return leaf;
    }
}
