using Ferry.Machine.State;

namespace Ferry.Machine.Devices;

/// <summary>
/// The core-local interruptor at 0x0200_0000 (SiFive CLINT layout, as QEMU's virt ACLINT):
/// msip at +0x0, mtimecmp at +0x4000, mtime at +0xBFF8. 4- and 8-byte accesses.
/// mtimecmp resets to all ones, so MTIP is clear until the guest arms the timer (as on QEMU).
/// Its outputs are two lines the board wires to the hart's MSIP and MTIP.
/// </summary>
public sealed class Clint : IMmioDevice
{
    public const ulong DefaultBase = 0x0200_0000;
    private const ulong MsipOffset = 0x0, MtimecmpOffset = 0x4000, MtimeOffset = 0xBFF8;

    private readonly MachineClock _clock;
    private readonly InterruptLine _msipLine;
    private readonly InterruptLine _mtipLine;
    private ulong _mtimecmp = ulong.MaxValue;
    private bool _msip;

    public Clint(MachineClock clock, InterruptLine msip, InterruptLine mtip)
    {
        _clock = clock;
        _msipLine = msip;
        _mtipLine = mtip;
    }

    public string Name => "clint";

    public ulong BaseAddress => DefaultBase;

    public ulong Size => 0x10000;

    public ulong MTimeCmp => _mtimecmp;

    public bool Read(ulong offset, int size, out ulong value)
    {
        value = 0;
        if (size < 4)
        {
            return false;
        }

        if (offset == MsipOffset)
        {
            value = _msip ? 1UL : 0;
            return true;
        }

        if (offset is >= MtimecmpOffset and < MtimecmpOffset + 8)
        {
            value = Part(_mtimecmp, offset - MtimecmpOffset, size);
            return true;
        }

        if (offset is >= MtimeOffset and < MtimeOffset + 8)
        {
            value = Part(_clock.MTime, offset - MtimeOffset, size);
            return true;
        }

        return true; // unimplemented registers read as zero
    }

    public bool Write(ulong offset, int size, ulong value)
    {
        if (size < 4)
        {
            return false;
        }

        if (offset == MsipOffset)
        {
            _msip = (value & 1) != 0;
        }
        else if (offset is >= MtimecmpOffset and < MtimecmpOffset + 8)
        {
            _mtimecmp = Merge(_mtimecmp, offset - MtimecmpOffset, size, value);
        }
        else if (offset is >= MtimeOffset and < MtimeOffset + 8)
        {
            _clock.SetMTime(Merge(_clock.MTime, offset - MtimeOffset, size, value));
        }

        UpdateInterruptLines();
        return true;
    }

    /// <summary>Drives MTIP and MSIP from the current time and registers.</summary>
    public void UpdateInterruptLines()
    {
        _mtipLine.Set(_clock.MTime >= _mtimecmp);
        _msipLine.Set(_msip);
    }

    public ClintState SaveState() => new(_mtimecmp, _msip);

    public void RestoreState(ClintState state)
    {
        _mtimecmp = state.MTimeCmp;
        _msip = state.Msip;
        UpdateInterruptLines();
    }

    private static ulong Part(ulong reg, ulong byteOffset, int size)
    {
        ulong v = reg >> (int)(8 * byteOffset);
        return size >= 8 ? v : v & 0xFFFF_FFFF;
    }

    private static ulong Merge(ulong reg, ulong byteOffset, int size, ulong value)
    {
        if (size >= 8 && byteOffset == 0)
        {
            return value;
        }

        int shift = (int)(8 * byteOffset);
        ulong mask = 0xFFFF_FFFFUL << shift;
        return (reg & ~mask) | ((value & 0xFFFF_FFFF) << shift);
    }
}

public sealed record ClintState(ulong MTimeCmp, bool Msip)
{
    public static readonly StateSection<ClintState> Section = new("CLNT", 1, 64, Write, Read);

    private static void Write(BinaryWriter w, ClintState s)
    {
        w.Write(s.MTimeCmp);
        w.Write(s.Msip);
    }

    private static ClintState Read(BinaryReader r) => new(r.ReadUInt64(), r.ReadBoolean());
}
