using Ferry.Machine.Cpu;
using Ferry.Machine.Devices;

namespace Ferry.Machine.Board;

/// <summary>
/// The hart's interrupt inputs as a sink: input n is mip bit n (MSIP 3, MTIP 7, SEIP 9, MEIP 11),
/// driven by the CLINT and the PLIC through the lines the board lays.
/// </summary>
public sealed class HartInterruptInputs(Hart hart) : IInterruptSink
{
    private const ulong DeviceBits = Irq.MSIP | Irq.MTIP | Irq.SEIP | Irq.MEIP;

    public void SetInput(int input, bool level)
    {
        ulong bit = (uint)input < 64 ? 1UL << input : 0;
        if ((bit & DeviceBits) == 0)
        {
            throw new ArgumentOutOfRangeException(nameof(input), input, "not a device-driven mip bit");
        }

        hart.SetInterruptLine(bit, level);
    }
}
