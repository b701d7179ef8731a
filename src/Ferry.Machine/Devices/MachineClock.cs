using System.Diagnostics;
using Ferry.Machine.State;

namespace Ferry.Machine.Devices;

/// <summary>
/// The machine's timebase (mtime, 10 MHz as QEMU's virt). Two modes:
/// real time (mtime follows the host clock) and instruction-counted ("icount", as QEMU's
/// -icount): mtime = virtual clock / <see cref="InstructionsPerTick"/>, where the virtual clock
/// is the hart's retired instructions plus time skipped in WFI. In icount mode a run is a pure
/// function of image, memory size and instruction count: 1 instruction = 10 ns of guest time.
/// </summary>
public sealed class MachineClock
{
    public const ulong TimebaseHz = 10_000_000;
    public const ulong InstructionsPerTick = 10;

    private readonly Func<ulong> _virtualClock;
    private readonly long _start = Stopwatch.GetTimestamp();
    private ulong _offset;

    public MachineClock(bool icount, Func<ulong> virtualClock)
    {
        Icount = icount;
        _virtualClock = virtualClock;
    }

    public bool Icount { get; }

    public ulong MTime => Raw() + _offset;

    /// <summary>Sets mtime (a guest write, or restoring state).</summary>
    public void SetMTime(ulong value) => _offset = value - Raw();

    /// <summary>In icount mode, the virtual clock at which mtime reaches <paramref name="mtime"/>.</summary>
    public ulong VirtualClockAt(ulong mtime)
    {
        ulong ticks = mtime - _offset;
        return ticks > ulong.MaxValue / InstructionsPerTick ? ulong.MaxValue : ticks * InstructionsPerTick;
    }

    /// <summary>Host time until mtime reaches <paramref name="mtime"/> (real-time mode).</summary>
    public TimeSpan RealTimeUntil(ulong mtime)
    {
        ulong now = MTime;
        if (mtime <= now)
        {
            return TimeSpan.Zero;
        }

        ulong ticks = mtime - now;
        return ticks >= (ulong)TimeSpan.MaxValue.Ticks / 2 ? Timeout.InfiniteTimeSpan : TimeSpan.FromTicks((long)(ticks * (TimeSpan.TicksPerSecond / (long)TimebaseHz)));
    }

    public ClockState SaveState() => new(MTime, _offset);

    /// <summary>
    /// Icount: the offset is restored exactly (the virtual clock travels with the hart).
    /// Real time: mtime continues from the saved value.
    /// </summary>
    public void RestoreState(ClockState state)
    {
        if (Icount)
        {
            _offset = state.Offset;
        }
        else
        {
            SetMTime(state.MTime);
        }
    }

    private ulong Raw()
    {
        if (Icount)
        {
            return _virtualClock() / InstructionsPerTick;
        }

        long elapsed = Stopwatch.GetTimestamp() - _start;
        return (ulong)(elapsed * (double)TimebaseHz / Stopwatch.Frequency);
    }
}

/// <summary>mtime when saved, and the offset of mtime from the clock's source (exact in icount mode).</summary>
public sealed record ClockState(ulong MTime, ulong Offset)
{
    public static readonly StateSection<ClockState> Section = new("CLCK", 1, 64, Write, Read);

    private static void Write(BinaryWriter w, ClockState s)
    {
        w.Write(s.MTime);
        w.Write(s.Offset);
    }

    private static ClockState Read(BinaryReader r) => new(r.ReadUInt64(), r.ReadUInt64());
}
