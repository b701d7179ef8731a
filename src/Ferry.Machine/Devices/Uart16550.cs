using Ferry.Machine.State;

namespace Ferry.Machine.Devices;

/// <summary>
/// An ns16550a UART at 0x1000_0000 (register shift 0, as QEMU's virt), with the register
/// behaviour of QEMU 7.2's hw/char/serial.c as far as a guest can observe it:
///
///   0 RBR/THR (DLL when LCR.DLAB)   1 IER (DLM when LCR.DLAB)   2 IIR (read) / FCR (write)
///   3 LCR   4 MCR   5 LSR   6 MSR   7 SCR
///
/// Transmit goes to the console sink at once, so THR and the transmitter are always empty
/// again by the time the guest looks (LSR.THRE and TEMT stay set) and every THR write ends
/// with a new THR-empty interrupt condition, as QEMU's serial_xmit with a backend that never
/// blocks. Receive takes bytes the host queued (<see cref="EnqueueInput"/>, any thread); the
/// queue stands for the receive FIFO and the host side behind it (QEMU's chardev), so no byte
/// is ever lost to an overrun and a FIFO reset (FCR.RFR) leaves queued bytes alone (they count
/// as arriving just after it). With FIFOs on, fewer bytes than the trigger level raise the
/// character-timeout interrupt (IIR 0x0C) at once rather than four character times later.
/// No line errors or modem-status changes ever happen (MSR reads DCD|DSR|CTS; in loopback,
/// the MCR outputs, and THR bytes come back as input).
///
/// The interrupt output (PLIC source 10 on the board) is high while IIR reports one:
/// by priority, receiver line status (never), received data or character timeout (IER.RDI),
/// THR empty (IER.THRI; cleared by reading IIR or writing THR, set again when THRI is turned
/// on, the transmit FIFO is reset or a byte has gone out), modem status (never).
/// The line is driven where QEMU's serial_update_irq runs (each drive high is a new request to
/// the PLIC): after an RBR read, an IIR read that reported THR empty, an IER write that changed
/// it, an FCR write, before and after a THR write, and when input arrives (sampled at run
/// boundaries, <see cref="SampleInput"/>). Restoring state drives nothing (the PLIC's saved
/// pending bits already say what the line did). Register accesses run on the machine thread only.
/// </summary>
public sealed class Uart16550 : IMmioDevice
{
    public const ulong DefaultBase = 0x1000_0000;

    /// <summary>The clock the device tree announces (QEMU virt's 3.6864 MHz).</summary>
    public const uint ClockFrequency = 3_686_400;

    public const int FifoSize = 16;

    private const byte IerRdi = 0x01, IerThri = 0x02; // RLSI (0x04) and MSI (0x08) enable interrupts that never happen here
    private const byte IirNone = 0x01, IirThri = 0x02, IirRdi = 0x04, IirCti = 0x0C, IirIdMask = 0x06, IirFifo = 0xC0;
    private const byte FcrEnable = 0x01, FcrClearRx = 0x02, FcrClearTx = 0x04, FcrStickyBits = 0xC9;
    private const byte LsrDataReady = 0x01, LsrThrEmpty = 0x20, LsrTransmitterEmpty = 0x40;
    private const byte LcrDlab = 0x80;
    private const byte McrOut2 = 0x08, McrLoop = 0x10;
    private const byte MsrIdle = 0xB0; // DCD, DSR, CTS

    private readonly IConsoleSink _sink;
    private readonly InterruptLine _irq;
    private readonly Action? _inputArrived;
    private readonly Queue<byte> _rx = new();
    private readonly object _rxLock = new();
    private volatile bool _inputSinceSample;
    private int _available; // input bytes the UART has seen (machine thread): the queue length at the last sample
    private byte _ier, _lcr, _mcr = McrOut2, _scr, _fcr, _dll = 0x0C, _dlm, _iir = IirNone;
    private bool _thrInterruptPending;
    private ulong _transmitted;

    /// <param name="sink">where transmitted bytes go</param>
    /// <param name="irq">the interrupt output</param>
    /// <param name="inputArrived">called on the enqueuing thread after host input is queued (the board ends the run so <see cref="SampleInput"/> runs soon)</param>
    public Uart16550(IConsoleSink sink, InterruptLine irq, Action? inputArrived = null)
    {
        _sink = sink;
        _irq = irq;
        _inputArrived = inputArrived;
    }

    public string Name => "uart0";

    public ulong BaseAddress => DefaultBase;

    public ulong Size => 0x100;

    /// <summary>Bytes the guest has written to THR since boot (the console position).</summary>
    public ulong Transmitted => _transmitted;

    /// <summary>Queues host input (any thread).</summary>
    public void EnqueueInput(ReadOnlySpan<byte> bytes)
    {
        if (bytes.IsEmpty)
        {
            return;
        }

        lock (_rxLock)
        {
            foreach (byte b in bytes)
            {
                _rx.Enqueue(b);
            }
        }

        _inputSinceSample = true;
        _inputArrived?.Invoke();
    }

    /// <summary>Machine thread: brings the interrupt output up to date with input queued since the last look.</summary>
    public void SampleInput()
    {
        if (_inputSinceSample)
        {
            _inputSinceSample = false;
            _available = RxCount();
            Update();
        }
    }

    public bool Read(ulong offset, int size, out ulong value)
    {
        value = 0;
        switch (offset)
        {
            case 0 when (_lcr & LcrDlab) != 0:
                value = _dll;
                break;
            case 0:
                value = Dequeue();
                Update();
                break;
            case 1 when (_lcr & LcrDlab) != 0:
                value = _dlm;
                break;
            case 1:
                value = _ier;
                break;
            case 2:
                value = _iir;
                if ((_iir & IirIdMask) == IirThri)
                {
                    _thrInterruptPending = false;
                    Update();
                }

                break;
            case 3:
                value = _lcr;
                break;
            case 4:
                value = _mcr;
                break;
            case 5:
                value = (ulong)(LsrThrEmpty | LsrTransmitterEmpty | (_available > 0 ? LsrDataReady : 0));
                break;
            case 6:
                value = (_mcr & McrLoop) != 0
                    ? (ulong)(((_mcr & 0x0C) << 4) | ((_mcr & 0x02) << 3) | ((_mcr & 0x01) << 5))
                    : MsrIdle;
                break;
            case 7:
                value = _scr;
                break;
        }

        return true;
    }

    public bool Write(ulong offset, int size, ulong value)
    {
        byte b = (byte)value;
        switch (offset)
        {
            case 0 when (_lcr & LcrDlab) != 0:
                _dll = b;
                break;
            case 0:
                Transmit(b);
                break;
            case 1 when (_lcr & LcrDlab) != 0:
                _dlm = b;
                break;
            case 1:
                byte changed = (byte)((_ier ^ b) & 0x0F);
                _ier = (byte)(b & 0x0F);
                if ((changed & IerThri) != 0)
                {
                    // Turning THRI on raises THR empty again (THRE is always set here), as QEMU.
                    _thrInterruptPending = (_ier & IerThri) != 0;
                }

                if (changed != 0)
                {
                    Update();
                }

                break;
            case 2:
                if (((b ^ _fcr) & FcrEnable) != 0)
                {
                    b |= FcrClearRx | FcrClearTx;
                }

                if ((b & FcrClearTx) != 0)
                {
                    _thrInterruptPending = true;
                }

                _fcr = (byte)(b & FcrStickyBits);
                Update();
                break;
            case 3:
                _lcr = b;
                break;
            case 4:
                _mcr = (byte)(b & 0x1F);
                break;
            case 7:
                _scr = b;
                break;
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

        return new UartState(_ier, _lcr, _mcr, _scr, _fcr, _dll, _dlm, _thrInterruptPending, _transmitted, pending, _available);
    }

    public void RestoreState(UartState s)
    {
        s.Validate();
        (_ier, _lcr, _mcr, _scr, _fcr, _dll, _dlm) = (s.Ier, s.Lcr, s.Mcr, s.Scr, s.Fcr, s.Dll, s.Dlm);
        (_thrInterruptPending, _transmitted) = (s.ThrInterruptPending, s.Transmitted);
        lock (_rxLock)
        {
            _rx.Clear();
            foreach (byte b in s.PendingInput)
            {
                _rx.Enqueue(b);
            }

        }

        _available = s.SeenInput;
        _inputSinceSample = s.SeenInput < s.PendingInput.Length; // arrived, not yet sampled: it will be
        _iir = Iir();
    }

    private void Transmit(byte b)
    {
        // QEMU: writing THR clears the THR-empty interrupt; the byte leaves at once and sets it
        // again. The output falls and rises, which the PLIC sees as a new request.
        _thrInterruptPending = false;
        Update();
        _thrInterruptPending = true;
        Update();
        if ((_mcr & McrLoop) != 0)
        {
            // In loopback the byte comes back as input (QEMU's serial_receive1), after THR-empty.
            lock (_rxLock)
            {
                _rx.Enqueue(b);
                _available = _rx.Count;
            }

            Update();
        }
        else
        {
            _transmitted++;
            _sink.Write(b);
        }
    }

    /// <summary>Recomputes IIR and drives the interrupt output (QEMU's serial_update_irq).</summary>
    private void Update()
    {
        _iir = Iir();
        _irq.Set((_iir & IirNone) == 0);
    }

    private byte Iir()
    {
        bool fifo = (_fcr & FcrEnable) != 0;
        byte id = IirNone;
        if ((_ier & IerRdi) != 0 && _available > 0)
        {
            id = !fifo || Math.Min(_available, FifoSize) >= TriggerLevel() ? IirRdi : IirCti;
        }
        else if ((_ier & IerThri) != 0 && _thrInterruptPending)
        {
            id = IirThri;
        }

        return (byte)(id | (fifo ? IirFifo : 0));
    }

    private int TriggerLevel() => (_fcr >> 6) switch { 0 => 1, 1 => 4, 2 => 8, _ => 14 };

    private int RxCount()
    {
        lock (_rxLock)
        {
            return _rx.Count;
        }
    }

    /// <summary>An RBR read: the next byte, if the UART has seen one; then any input that arrived meanwhile is seen too.</summary>
    private byte Dequeue()
    {
        lock (_rxLock)
        {
            byte b = _available > 0 && _rx.Count > 0 ? _rx.Dequeue() : (byte)0;
            _available = _rx.Count;
            return b;
        }
    }
}

/// <summary>
/// The UART's registers (IIR, LSR and MSR follow from these and the input), whether a THR-empty
/// interrupt is pending, the console position, input queued but not yet read, and how much of
/// it the UART has seen (the rest arrived after its last sample).
/// </summary>
public sealed record UartState(
    byte Ier, byte Lcr, byte Mcr, byte Scr, byte Fcr, byte Dll, byte Dlm, bool ThrInterruptPending, ulong Transmitted, byte[] PendingInput, int SeenInput)
{
    public const int MaxPendingInput = 4096;

    public static readonly StateSection<UartState> Section = new("UART", 1, 32 + MaxPendingInput, Write, Read);

    /// <summary>Throws <see cref="InvalidDataException"/> unless every field is one the UART can hold.</summary>
    public void Validate()
    {
        if ((Ier & ~0x0F) != 0 || (Mcr & ~0x1F) != 0 || (Fcr & ~0xC9) != 0)
        {
            throw new InvalidDataException($"UART state: IER 0x{Ier:x2}, MCR 0x{Mcr:x2} or FCR 0x{Fcr:x2} has bits the UART cannot hold");
        }

        if (PendingInput.Length > MaxPendingInput)
        {
            throw new InvalidDataException($"UART state: {PendingInput.Length} pending input bytes exceeds {MaxPendingInput}");
        }

        if (SeenInput < 0 || SeenInput > PendingInput.Length)
        {
            throw new InvalidDataException($"UART state: {SeenInput} seen of {PendingInput.Length} pending input bytes");
        }
    }

    private static void Write(BinaryWriter w, UartState s)
    {
        w.Write([s.Ier, s.Lcr, s.Mcr, s.Scr, s.Fcr, s.Dll, s.Dlm]);
        w.Write(s.ThrInterruptPending);
        w.Write(s.Transmitted);
        w.Write(s.PendingInput.Length);
        w.Write(s.PendingInput);
        w.Write(s.SeenInput);
    }

    private static UartState Read(BinaryReader r)
    {
        byte ier = r.ReadByte(), lcr = r.ReadByte(), mcr = r.ReadByte(), scr = r.ReadByte(), fcr = r.ReadByte(), dll = r.ReadByte(), dlm = r.ReadByte();
        bool thrPending = r.ReadBoolean();
        ulong transmitted = r.ReadUInt64();
        int pending = r.ReadInt32();
        if (pending < 0 || pending > MaxPendingInput)
        {
            throw new InvalidDataException($"UART state: {pending} pending input bytes is out of range");
        }

        byte[] input = r.ReadBytes(pending);
        if (input.Length != pending)
        {
            throw new EndOfStreamException();
        }

        var state = new UartState(ier, lcr, mcr, scr, fcr, dll, dlm, thrPending, transmitted, input, r.ReadInt32());
        state.Validate();
        return state;
    }
}

/// <summary>Where console bytes go.</summary>
public interface IConsoleSink
{
    void Write(byte b);
}
