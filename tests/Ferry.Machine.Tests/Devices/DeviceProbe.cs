using Ferry.Machine.Cpu;
using Ferry.Machine.Tests.Support;

namespace Ferry.Machine.Tests.Devices;

/// <summary>
/// A bare-metal program that performs device register accesses in order, with interrupts
/// masked (mstatus.MIE = 0), records every read (and mip when asked) in RAM, then prints the
/// records as 16 hex digits per line and exits. The same ELF runs under QEMU and Ferry.
/// </summary>
internal sealed class DeviceProbe
{
    private const ulong Origin = 0x8000_0000, Records = 0x8010_0000, UartThr = 0x1000_0000;
    private readonly List<(char Kind, ulong Address, int Size, ulong Value)> _steps = [];

    public int ReadCount => _steps.Count(s => s.Kind != 'W');

    public DeviceProbe Write(ulong address, int size, ulong value)
    {
        _steps.Add(('W', address, size, value));
        return this;
    }

    public DeviceProbe Read(ulong address, int size)
    {
        _steps.Add(('R', address, size, 0));
        return this;
    }

    /// <summary>
    /// Records mip's external-interrupt bits, MEIP and SEIP (the timer bit is masked: QEMU 7.2
    /// resets mtimecmp to 0, so MTIP is set from reset there, not in Ferry).
    /// </summary>
    public DeviceProbe Mip()
    {
        _steps.Add(('M', 0, 0, 0));
        return this;
    }

    public byte[] Elf()
    {
        var p = new ProgramBuilder(Origin);
        Label hex = p.NewLabel(), loop = p.NewLabel();
        p.Li(R.S1, Records);
        foreach ((char kind, ulong address, int size, ulong value) in _steps)
        {
            switch (kind)
            {
                case 'W':
                    p.Li(R.T0, address).Li(R.T1, value);
                    p.Emit(size == 1 ? Asm.Sb(R.T1, R.T0, 0) : Asm.Sw(R.T1, R.T0, 0));
                    break;
                case 'R':
                    p.Li(R.T0, address);
                    p.Emit(size == 1 ? Asm.Lbu(R.A0, R.T0, 0) : Asm.Lw(R.A0, R.T0, 0));
                    p.Emit(Asm.Sd(R.A0, R.S1, 0), Asm.Addi(R.S1, R.S1, 8));
                    break;
                default:
                    p.Emit(Asm.Csrr(R.A0, Csr.Mip)).Li(R.T0, Irq.MEIP | Irq.SEIP);
                    p.Emit(Asm.And(R.A0, R.A0, R.T0), Asm.Sd(R.A0, R.S1, 0), Asm.Addi(R.S1, R.S1, 8));
                    break;
            }
        }

        // Print every record: 16 hex digits and a newline.
        p.Li(R.S2, Records).Li(R.S3, (ulong)ReadCount).Li(R.S4, UartThr).La(R.S5, hex);
        p.Bind(loop);
        p.Emit(Asm.Ld(R.A0, R.S2, 0));
        for (int shift = 60; shift >= 0; shift -= 4)
        {
            p.Emit(Asm.Srli(R.T2, R.A0, shift), Asm.Andi(R.T2, R.T2, 15), Asm.Add(R.T3, R.S5, R.T2), Asm.Lbu(R.T4, R.T3, 0), Asm.Sb(R.T4, R.S4, 0));
        }

        p.Emit(Asm.Addi(R.T4, R.Zero, '\n'), Asm.Sb(R.T4, R.S4, 0));
        p.Emit(Asm.Addi(R.S2, R.S2, 8), Asm.Addi(R.S3, R.S3, -1));
        p.Emit(loop, off => Asm.Bne(R.S3, R.Zero, off));
        p.Exit();
        p.Bind(hex);
        p.Data("0123456789abcdef"u8);
        return MinimalElf.Wrap(p.Build(), Origin);
    }
}
