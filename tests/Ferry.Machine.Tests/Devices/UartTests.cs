using Ferry.Machine.Devices;

namespace Ferry.Machine.Tests.Devices;

public sealed class UartTests
{
    private const int Irq = 10;
    private readonly Pins _plic = new();
    private readonly List<byte> _console = [];
    private int _arrivals;
    private readonly Uart16550 _uart;

    public UartTests() => _uart = new Uart16550(new Sink(_console), new InterruptLine(_plic, Irq), () => _arrivals++);

    private sealed class Sink(List<byte> bytes) : IConsoleSink
    {
        public void Write(byte b) => bytes.Add(b);
    }

    private byte In(ulong reg)
    {
        Assert.True(_uart.Read(reg, 1, out ulong v));
        return (byte)v;
    }

    private void Out(ulong reg, byte value) => Assert.True(_uart.Write(reg, 1, value));

    private bool Line => _plic.Level[Irq];

    [Fact]
    public void ResetValues_AreQemus()
    {
        Assert.Equal(0x01, In(2));
        Assert.Equal(0x60, In(5));
        Assert.Equal(0x08, In(4));
        Assert.Equal(0xB0, In(6));
        Out(3, 0x80);
        Assert.Equal(0x0C, In(0));
        Assert.Equal(0x00, In(1));
    }

    /// <summary>Linux 8250's serial8250_do_startup THRE test: both IIR reads must report an interrupt (no UART_BUG_THRE, no UART_BUG_TXEN).</summary>
    [Fact]
    public void LinuxThreTest_FindsA16550A()
    {
        Out(2, 0x01);
        Out(2, 0x07);
        Out(2, 0x00);
        Assert.NotEqual(0xFF, In(5));
        Out(1, 0x02);
        byte iir1 = In(2);
        Out(1, 0x00);
        Out(1, 0x02);
        byte iir = In(2);
        Out(1, 0x00);
        Assert.Equal(0, iir1 & 0x01);
        Assert.Equal(0, iir & 0x01);
        Assert.Equal(0x02, iir1 & 0x0F);
    }

    [Fact]
    public void ThrEmpty_IsRaisedByThriAndByEachByteSent_ClearedByReadingIir()
    {
        Out(1, 0x02);
        Assert.True(Line);
        Assert.Equal(0x02, In(2));
        Assert.False(Line);
        Assert.Equal(0x01, In(2));
        int calls = _plic.Calls;
        Out(0, (byte)'x');
        Assert.True(Line);
        Assert.Equal(calls + 2, _plic.Calls); // low then high: a new request
        Assert.Equal("x"u8.ToArray(), _console);
        Assert.Equal(1UL, _uart.Transmitted);
        Out(1, 0x00);
        Assert.False(Line);
    }

    [Fact]
    public void Input_IsSeenWhenSampled_AndRaisesReceivedData()
    {
        Out(1, 0x01);
        _uart.EnqueueInput("hi"u8);
        Assert.Equal(1, _arrivals);
        Assert.Equal(0x60, In(5)); // not sampled yet: the board samples between runs
        Assert.False(Line);
        _uart.SampleInput();
        Assert.Equal(0x61, In(5));
        Assert.True(Line);
        Assert.Equal(0x04, In(2));
        Assert.Equal((byte)'h', In(0));
        Assert.True(Line);
        Assert.Equal((byte)'i', In(0));
        Assert.False(Line);
        Assert.Equal(0x01, In(2));
        Assert.Equal(0x60, In(5));
        Assert.Equal(0, In(0)); // nothing left: reads 0
    }

    [Fact]
    public void FifoTriggerLevel_BelowIt_CharacterTimeout_AtIt_ReceivedData()
    {
        Out(2, 0xC1); // FIFO on, trigger level 14
        Out(1, 0x01);
        _uart.EnqueueInput(new byte[3]);
        _uart.SampleInput();
        Assert.Equal(0xCC, In(2));
        Assert.True(Line);
        _uart.EnqueueInput(new byte[11]);
        _uart.SampleInput();
        Assert.Equal(0xC4, In(2));
        for (int i = 0; i < 14; i++)
        {
            In(0);
        }

        Assert.Equal(0xC1, In(2));
        Assert.False(Line);
    }

    [Fact]
    public void ReceivedData_ComesBeforeThrEmpty()
    {
        Out(1, 0x03);
        _uart.EnqueueInput("a"u8);
        _uart.SampleInput();
        Assert.Equal(0x04, In(2));
        In(0);
        Assert.Equal(0x02, In(2));
    }

    [Fact]
    public void Loopback_ReturnsSentBytesAsInput_AndMirrorsModemLines()
    {
        Out(4, 0x1F);
        Assert.Equal(0xF0, In(6));
        Out(0, (byte)'L');
        Assert.Empty(_console);
        Assert.Equal(0UL, _uart.Transmitted);
        Assert.Equal(0x61, In(5));
        Assert.Equal((byte)'L', In(0));
    }

    [Fact]
    public void Restore_DrivesNothing_AndKeepsUnsampledInputUnseen()
    {
        Out(1, 0x03);
        Out(7, 0x5A);
        _uart.EnqueueInput("ab"u8);
        _uart.SampleInput();
        _uart.EnqueueInput("c"u8); // arrived after the last sample
        UartState saved = _uart.SaveState();
        Assert.Equal(2, saved.SeenInput);

        var pins = new Pins();
        var copy = new Uart16550(new Sink([]), new InterruptLine(pins, Irq));
        copy.RestoreState(saved);
        Assert.Equal(0, pins.Calls);
        Assert.True(copy.Read(2, 1, out ulong iir));
        Assert.Equal(0x04UL, iir);
        Assert.True(copy.Read(7, 1, out ulong scr));
        Assert.Equal(0x5AUL, scr);
        copy.SampleInput(); // the unseen byte is seen now, as it would have been without the restore
        Assert.Equal(1, pins.Calls);
        Assert.Equal(saved with { SeenInput = 3, PendingInput = [] }, copy.SaveState() with { PendingInput = [] });

        Assert.Throws<InvalidDataException>(() => copy.RestoreState(saved with { SeenInput = 4 }));
        Assert.Throws<InvalidDataException>(() => copy.RestoreState(saved with { Ier = 0x10 }));
    }
}
