namespace Ferry.Machine.Devices;

/// <summary>
/// Where an interrupt line ends: a PLIC source, a hart's mip bit. <paramref name="input"/> is
/// the sink's own numbering (the PLIC source number, the mip bit number).
/// </summary>
public interface IInterruptSink
{
    /// <summary>Drives input <paramref name="input"/> to <paramref name="level"/> (sinks see every call, not only changes).</summary>
    void SetInput(int input, bool level);
}

/// <summary>
/// One level-triggered interrupt wire, from a device's output to a sink's input, laid by the
/// board. A device drives its lines and knows nothing of what they reach (so no device holds
/// the hart or the PLIC). Every call is forwarded, as QEMU's qemu_set_irq: the PLIC sets a
/// source pending at each call that drives it high, and the hart's mip bits follow the level.
/// Machine thread only; no allocation.
/// </summary>
public sealed class InterruptLine
{
    private readonly IInterruptSink _sink;
    private readonly int _input;

    public InterruptLine(IInterruptSink sink, int input)
    {
        ArgumentNullException.ThrowIfNull(sink);
        _sink = sink;
        _input = input;
    }

    /// <summary>The level last driven.</summary>
    public bool Level { get; private set; }

    public void Set(bool level)
    {
        Level = level;
        _sink.SetInput(_input, level);
    }

    public void Raise() => Set(true);

    public void Lower() => Set(false);
}
