namespace Ferry.Machine.Devices;

/// <summary>
/// The sifive_test finisher at 0x0010_0000, with QEMU's semantics: writing 0x5555 ends the
/// run with status 0, (code &lt;&lt; 16) | 0x3333 with status code, 0x7777 asks for a reset.
/// Accesses of 2 and 4 bytes (QEMU's valid sizes; OpenSBI's driver writes 16 bits) act.
/// </summary>
public sealed class SifiveTest : IMmioDevice
{
    public const ulong DefaultBase = 0x0010_0000;
    private const uint Pass = 0x5555, Fail = 0x3333, Reset = 0x7777;

    private readonly Action<GuestExit> _onExit;

    public SifiveTest(Action<GuestExit> onExit) => _onExit = onExit;

    public string Name => "sifive_test";

    public ulong BaseAddress => DefaultBase;

    public ulong Size => 0x1000;

    public bool Read(ulong offset, int size, out ulong value)
    {
        value = 0;
        return true;
    }

    public bool Write(ulong offset, int size, ulong value)
    {
        if (offset != 0 || size < 2)
        {
            return true;
        }

        switch ((uint)value & 0xFFFF)
        {
            case Pass:
                _onExit(new GuestExit(0, false));
                break;
            case Fail:
                _onExit(new GuestExit((int)((value >> 16) & 0xFFFF), false));
                break;
            case Reset:
                _onExit(new GuestExit(0, true));
                break;
        }

        return true;
    }
}

/// <summary>The guest asked to stop: its exit status, or a reset request.</summary>
public sealed record GuestExit(int Status, bool Reset);
