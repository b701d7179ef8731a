using System.Diagnostics;

namespace Ferry.Migration.Metrics;

/// <summary>
/// Samples of a VM's retired-instruction count over host time (a ring), so the report can
/// give the guest's speed before, during and after a migration, and the timeline its curve.
/// </summary>
public sealed class InstructionRateMeter
{
    private readonly (long Ticks, ulong Instructions)[] _ring;
    private readonly object _lock = new();
    private long _count;

    public InstructionRateMeter(int capacity = 2400) => _ring = new (long, ulong)[capacity];

    public void Sample(ulong instructions)
    {
        lock (_lock)
        {
            _ring[_count % _ring.Length] = (Stopwatch.GetTimestamp(), instructions);
            _count++;
        }
    }

    /// <summary>Samples taken between two timestamps (inclusive), oldest first.</summary>
    public List<(long Ticks, ulong Instructions)> Between(long fromTicks, long toTicks)
    {
        var list = new List<(long, ulong)>();
        lock (_lock)
        {
            long first = Math.Max(0, _count - _ring.Length);
            for (long i = first; i < _count; i++)
            {
                var s = _ring[i % _ring.Length];
                if (s.Ticks >= fromTicks && s.Ticks <= toTicks)
                {
                    list.Add(s);
                }
            }
        }

        return list;
    }

    /// <summary>Instructions per second between two timestamps, from the samples nearest to them; null without two samples.</summary>
    public double? Rate(long fromTicks, long toTicks)
    {
        List<(long Ticks, ulong Instructions)> s = Between(fromTicks, toTicks);
        if (s.Count < 2 || s[^1].Ticks == s[0].Ticks)
        {
            return null;
        }

        return (s[^1].Instructions - s[0].Instructions) / ((double)(s[^1].Ticks - s[0].Ticks) / Stopwatch.Frequency);
    }
}
