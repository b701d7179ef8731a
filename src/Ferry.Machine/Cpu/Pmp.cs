namespace Ferry.Machine.Cpu;

/// <summary>
/// Physical memory protection: 16 entries (as QEMU's virt), OFF/TOR/NA4/NAPOT, lock bit,
/// 4-byte granularity. Checked only when the TLB is filled: an entry that covers the whole page
/// lets the page be cached; one that covers part of it forces a check per access.
/// As in QEMU, when no entry matches, M-mode is allowed and S/U-mode is denied.
/// </summary>
internal sealed class Pmp
{
    public const int Entries = 16;
    private const ulong AddrMask = (1UL << 54) - 1;
    private const byte R = 1, W = 2, X = 4, L = 0x80;

    private readonly byte[] _cfg = new byte[Entries];
    private readonly ulong[] _addr = new ulong[Entries];

    public enum Result : byte
    {
        Allow,
        Deny,

        /// <summary>An entry covers part of the range: check each access, do not cache the page.</summary>
        Partial,
    }

    /// <summary>True when no entry is active and none is locked: M-mode needs no check at all.</summary>
    public bool Inactive { get; private set; } = true;

    public ulong ReadCfg(int register)
    {
        ulong v = 0;
        for (int i = 0; i < 8; i++)
        {
            v |= (ulong)_cfg[(register * 4) + i] << (8 * i);
        }

        return v;
    }

    /// <summary>Writes pmpcfg0 (register 0) or pmpcfg2 (register 1); locked entries keep their value.</summary>
    public void WriteCfg(int register, ulong value)
    {
        for (int i = 0; i < 8; i++)
        {
            int entry = (register * 4) + i;
            if ((_cfg[entry] & L) == 0)
            {
                // Bits 6:5 are reserved (read as zero).
                _cfg[entry] = (byte)((value >> (8 * i)) & 0x9F);
            }
        }

        Recompute();
    }

    public ulong ReadAddr(int entry) => _addr[entry];

    public void WriteAddr(int entry, ulong value)
    {
        if ((_cfg[entry] & L) != 0)
        {
            return;
        }

        if (entry + 1 < Entries && (_cfg[entry + 1] & L) != 0 && Mode(entry + 1) == 1)
        {
            return;
        }

        _addr[entry] = value & AddrMask;
    }

    public Result Check(ulong lo, ulong hi, Access access, PrivilegeMode priv)
    {
        if (Inactive)
        {
            return priv == PrivilegeMode.Machine ? Result.Allow : Result.Deny;
        }

        for (int i = 0; i < Entries; i++)
        {
            int mode = Mode(i);
            if (mode == 0)
            {
                continue;
            }

            (ulong start, ulong end) = Range(i, mode);
            if (start > end || hi < start || lo > end)
            {
                continue;
            }

            if (lo < start || hi > end)
            {
                return Result.Partial;
            }

            byte cfg = _cfg[i];
            if (priv == PrivilegeMode.Machine && (cfg & L) == 0)
            {
                return Result.Allow;
            }

            byte need = access switch { Access.Read => R, Access.Write => W, _ => X };
            return (cfg & need) != 0 ? Result.Allow : Result.Deny;
        }

        return priv == PrivilegeMode.Machine ? Result.Allow : Result.Deny;
    }

    public ulong[] SaveCfg() => [ReadCfg(0), ReadCfg(2)];

    public ulong[] SaveAddr() => (ulong[])_addr.Clone();

    public void Restore(ulong[] cfg, ulong[] addr)
    {
        if (cfg.Length != 2 || addr.Length != Entries)
        {
            throw new ArgumentException("PMP state has the wrong shape");
        }

        for (int i = 0; i < 8; i++)
        {
            _cfg[i] = (byte)(cfg[0] >> (8 * i));
            _cfg[8 + i] = (byte)(cfg[1] >> (8 * i));
        }

        Array.Copy(addr, _addr, Entries);
        Recompute();
    }

    private int Mode(int entry) => (_cfg[entry] >> 3) & 3;

    private (ulong Start, ulong End) Range(int i, int mode)
    {
        ulong a = _addr[i];
        switch (mode)
        {
            case 1: // TOR
            {
                ulong lo = i == 0 ? 0 : _addr[i - 1] << 2;
                ulong hi = a << 2;
                return hi == 0 || lo >= hi ? (1, 0) : (lo, hi - 1);
            }

            case 2: // NA4
                return (a << 2, (a << 2) + 3);
            default: // NAPOT
            {
                int t = System.Numerics.BitOperations.TrailingZeroCount(~a);
                ulong start = (a & ~((1UL << t) - 1)) << 2;
                return (start, start + (8UL << t) - 1);
            }
        }
    }

    private void Recompute()
    {
        bool inactive = true;
        for (int i = 0; i < Entries; i++)
        {
            if (Mode(i) != 0 || (_cfg[i] & L) != 0)
            {
                inactive = false;
            }
        }

        Inactive = inactive;
    }
}

public enum Access : byte
{
    Read,
    Write,
    Execute,
}
