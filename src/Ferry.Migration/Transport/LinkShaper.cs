using System.Diagnostics;

namespace Ferry.Migration.Transport;

/// <summary>
/// Emulates a link of a given rate for everything one migration sends (both connections): a
/// token bucket paced against absolute time, so sleeping late is repaid by sending sooner
/// and the long-run rate is the cap, not below it. Urgent traffic (fault replies, switchover
/// state) is a priority class on the link, as a priority queue in front of a NIC: it never
/// waits behind bulk traffic, only behind earlier urgent traffic, and it still takes its time
/// on the link (urgent traffic alone never exceeds the rate). Bulk senders wait out what urgent
/// traffic took.
/// </summary>
public sealed class LinkShaper
{
    private readonly object _lock = new();
    private readonly double _bytesPerTick;
    private readonly long _burstTicks;
    private long _virtualTime;
    private long _urgentTime;

    /// <param name="bitsPerSecond">Link rate; 0 or less means unlimited.</param>
    public LinkShaper(long bitsPerSecond, TimeSpan? burst = null)
    {
        BitsPerSecond = bitsPerSecond;
        _bytesPerTick = bitsPerSecond / 8.0 / Stopwatch.Frequency;
        _burstTicks = (long)((burst ?? DefaultBurst).TotalSeconds * Stopwatch.Frequency);
        _virtualTime = Stopwatch.GetTimestamp();
        _urgentTime = _virtualTime;
    }

    /// <summary>
    /// How far behind schedule a sender may fall and still catch up (the bucket's depth): a few
    /// timer ticks, so that late wake-ups do not lower the rate, while a sender that really
    /// idles gets no more than this much credit.
    /// </summary>
    public static readonly TimeSpan DefaultBurst = TimeSpan.FromMilliseconds(5);

    public long BitsPerSecond { get; }

    public bool Unlimited => BitsPerSecond <= 0;

    public static LinkShaper None { get; } = new(0);

    /// <summary>Time on the link that <paramref name="bytes"/> take.</summary>
    public TimeSpan Transmission(long bytes) => Unlimited ? TimeSpan.Zero : TimeSpan.FromSeconds(bytes * 8.0 / BitsPerSecond);

    /// <summary>Waits until <paramref name="bytes"/> may be sent, then books them on the link.</summary>
    public ValueTask AcquireAsync(int bytes, bool urgent, CancellationToken cancellation)
    {
        if (Unlimited)
        {
            return ValueTask.CompletedTask;
        }

        long now = Stopwatch.GetTimestamp();
        long waitTicks = Book(bytes, urgent, now) - now;
        return waitTicks > Stopwatch.Frequency / 2000 ? WaitAsync(waitTicks, cancellation) : ValueTask.CompletedTask;
    }

    /// <summary>
    /// Books <paramref name="bytes"/> on the link at <paramref name="now"/> (Stopwatch ticks)
    /// and returns when they may start. Bulk starts after everything booked before it; urgent
    /// starts after the urgent traffic booked before it (at once if there is none) and pushes
    /// the bulk schedule back by its own transmission time.
    /// </summary>
    internal long Book(int bytes, bool urgent, long now)
    {
        long duration = (long)(bytes / _bytesPerTick);
        lock (_lock)
        {
            // The link idles while nobody sends: credit at most one burst of idle time.
            if (_virtualTime < now - _burstTicks)
            {
                _virtualTime = now - _burstTicks;
            }

            if (!urgent)
            {
                long start = _virtualTime;
                _virtualTime += duration;
                return start;
            }

            // Urgent traffic gets no idle credit: it is about latency, not catching up.
            long urgentStart = Math.Max(_urgentTime, now);
            _urgentTime = urgentStart + duration;
            _virtualTime += duration;
            return urgentStart;
        }
    }

    private static async ValueTask WaitAsync(long ticks, CancellationToken cancellation)
        => await Task.Delay(TimeSpan.FromSeconds((double)ticks / Stopwatch.Frequency), cancellation).ConfigureAwait(false);

    /// <summary>Parses 1Gbit, 100Mbit, 500M, 1G (bits per second), "unlimited" or 0.</summary>
    public static long ParseRate(string text)
    {
        string t = text.Trim().ToLowerInvariant();
        if (t is "unlimited" or "0" or "none" or "")
        {
            return 0;
        }

        foreach (string suffix in new[] { "bit/s", "bps", "bit", "b" })
        {
            if (t.EndsWith(suffix, StringComparison.Ordinal))
            {
                t = t[..^suffix.Length];
                break;
            }
        }

        double unit = 1;
        if (t.EndsWith('k'))
        {
            unit = 1e3;
        }
        else if (t.EndsWith('m'))
        {
            unit = 1e6;
        }
        else if (t.EndsWith('g'))
        {
            unit = 1e9;
        }

        if (unit != 1)
        {
            t = t[..^1];
        }

        // NaN, infinities, rates below 1 bit/s (which would truncate to 0: unlimited) and rates beyond a long are not bandwidths.
        if (!double.TryParse(t, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double v)
            || !(v * unit >= 1 && v * unit < long.MaxValue))
        {
            throw new FormatException($"'{text}' is not a bandwidth (examples: 1Gbit, 100Mbit, unlimited)");
        }

        return (long)(v * unit);
    }

    public static string Format(long bitsPerSecond) => bitsPerSecond <= 0 ? "unlimited"
        : bitsPerSecond >= 1_000_000_000 && bitsPerSecond % 1_000_000_000 == 0 ? $"{bitsPerSecond / 1_000_000_000}Gbit"
        : bitsPerSecond >= 1_000_000 ? $"{bitsPerSecond / 1e6:0.#}Mbit"
        : $"{bitsPerSecond}bit";
}
