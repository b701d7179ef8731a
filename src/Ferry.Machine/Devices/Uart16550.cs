namespace Ferry.Machine.Devices;

/// <summary>
/// An ns16550a UART at 0x1000_0000 (register shift 0, as QEMU's virt). Transmit goes to the
/// console sink at once (THR is always empty); receive takes bytes queued by the host.
/// No interrupt line is wired (the board has no PLIC yet): guests poll LSR.
/// </summary>
public sealed class Uart16550 : IMmioDevice
{
    public const ulong DefaultBase = 0x1000_0000;

    private const byte LsrDataReady = 0x01, LsrThrEmpty = 0x20, LsrTransmitterEmpty = 0x40;
    private const byte LcrDlab = 0x80;

    private readonly IConsoleSink _sink;
    private readonly Queue<byte> _rx = new();
    private readonly object _rxLock = new();
    private byte _ier, _lcr, _mcr, _scr, _fcr, _dll = 0x0C, _dlm;
    private ulong _transmitted;

    public Uart16550(IConsoleSink sink) => _sink = sink;

    public string Name => "uart0";

    public ulong BaseAddress => DefaultBase;

    public ulong Size => 0x100;

    /// <summary>Bytes the guest has written to THR since boot (the console position).</summary>
    public ulong Transmitted => _transmitted;

    public void EnqueueInput(ReadOnlySpan<byte> bytes)
    {
        lock (_rxLock)
        {
            foreach (byte b in bytes)
            {
                _rx.Enqueue(b);
            }
        }
    }

    public bool Read(ulong offset, int size, out ulong value)
    {
        value = offset switch
        {
            0 when (_lcr & LcrDlab) != 0 => _dll,
            0 => Dequeue(),
            1 when (_lcr & LcrDlab) != 0 => _dlm,
            1 => _ier,
            2 => (_fcr & 1) != 0 ? 0xC1UL : 0x01UL, // no interrupt pending
            3 => _lcr,
            4 => _mcr,
            5 => (ulong)(LsrThrEmpty | LsrTransmitterEmpty | (HasInput ? LsrDataReady : 0)),
            6 => 0xB0, // DCD, DSR, CTS asserted
            7 => _scr,
            _ => 0,
        };
        return true;
    }

    public bool Write(ulong offset, int size, ulong value)
    {
        byte b = (byte)value;
        switch (offset)
        {
            case 0 when (_lcr & LcrDlab) != 0: _dll = b; break;
            case 0:
                _transmitted++;
                _sink.Write(b);
                break;
            case 1 when (_lcr & LcrDlab) != 0: _dlm = b; break;
            case 1: _ier = (byte)(b & 0x0F); break;
            case 2: _fcr = (byte)(b & 0xC9); break;
            case 3: _lcr = b; break;
            case 4: _mcr = (byte)(b & 0x1F); break;
            case 7: _scr = b; break;
        }

        return true;
    }

    public UartState SaveState()
    {
        byte[] pending;
        lock (_rxLock)
        {
            pending = [.. _rx];
        }

        return new UartState(_ier, _lcr, _mcr, _scr, _fcr, _dll, _dlm, _transmitted, pending);
    }

    public void RestoreState(UartState s)
    {
        (_ier, _lcr, _mcr, _scr, _fcr, _dll, _dlm, _transmitted) = (s.Ier, s.Lcr, s.Mcr, s.Scr, s.Fcr, s.Dll, s.Dlm, s.Transmitted);
        lock (_rxLock)
        {
            _rx.Clear();
            foreach (byte b in s.PendingInput)
            {
                _rx.Enqueue(b);
            }
        }
    }

    private bool HasInput
    {
        get
        {
            lock (_rxLock)
            {
                return _rx.Count > 0;
            }
        }
    }

    private byte Dequeue()
    {
        lock (_rxLock)
        {
            return _rx.Count > 0 ? _rx.Dequeue() : (byte)0;
        }
    }
}

public sealed record UartState(byte Ier, byte Lcr, byte Mcr, byte Scr, byte Fcr, byte Dll, byte Dlm, ulong Transmitted, byte[] PendingInput);

/// <summary>Where console bytes go.</summary>
public interface IConsoleSink
{
    void Write(byte b);
}
