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
/// <para>Three classes, highest first: <see cref="LinkClass.Urgent"/> (the faulted page itself,
/// switchover state), <see cref="LinkClass.Prefetch"/> (a fault's locality window) and
/// <see cref="LinkClass.Bulk"/> (live rounds, the background push). A class waits only for the
/// traffic of its own and higher classes booked before it, and pushes the lower classes' schedule
/// back by its own time on the link: as strict priority queues in front of a NIC that interleaves
/// at packet granularity.</para>
/// </summary>
public sealed class LinkShaper
{
    private readonly object _lock = new();
    private readonly double _bytesPerTick;
    private readonly long _burstTicks;
    private long _virtualTime; // the bulk class's tail
    private long _urgentTime;
    private long _prefetchTime;

    /// <param name="bitsPerSecond">Link rate; 0 or less means unlimited.</param>
    public LinkShaper(long bitsPerSecond, TimeSpan? burst = null)
    {
        BitsPerSecond = bitsPerSecond;
        _bytesPerTick = bitsPerSecond / 8.0 / Stopwatch.Frequency;
        _burstTicks = (long)((burst ?? DefaultBurst).TotalSeconds * Stopwatch.Frequency);
        _virtualTime = Stopwatch.GetTimestamp();
        _urgentTime = _virtualTime;
        _prefetchTime = _virtualTime;
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
        => AcquireAsync(bytes, urgent ? LinkClass.Urgent : LinkClass.Bulk, cancellation);

    /// <summary>Waits until <paramref name="bytes"/> of class <paramref name="linkClass"/> may be sent, then books them on the link.</summary>
    public ValueTask AcquireAsync(int bytes, LinkClass linkClass, CancellationToken cancellation)
    {
        if (Unlimited)
        {
            return ValueTask.CompletedTask;
        }

        long now = Stopwatch.GetTimestamp();
        long waitTicks = Book(bytes, linkClass, now) - now;
        return waitTicks > SlackTicks ? WaitAsync(waitTicks, cancellation) : ValueTask.CompletedTask;
    }

    /// <summary>
    /// The blocking form, for the dedicated threads of the fault path and the push. With
    /// <paramref name="untilSent"/> it returns only when the frame's last bit has crossed the
    /// emulated link (its start plus its transmission time), as a store-and-forward receiver
    /// would see it: a fault reply's latency then includes the page's own time on the link.
    /// Returns the ticks it waited.
    /// </summary>
    public long Acquire(int bytes, LinkClass linkClass, bool untilSent, CancellationToken cancellation)
    {
        if (Unlimited)
        {
            return 0;
        }

        long now = Stopwatch.GetTimestamp();
        long start = Book(bytes, linkClass, now);
        long until = untilSent ? start + (long)(bytes / _bytesPerTick) : start;
        if (until - now <= (untilSent ? 0 : SlackTicks))
        {
            return 0;
        }

        WaitUntil(until, untilSent, cancellation);
        return Stopwatch.GetTimestamp() - now;
    }

    /// <summary>
    /// Waits until the bulk class could start now, without booking anything: its schedule, which
    /// every urgent and prefetch frame booked since pushed back, has caught up with the clock. A
    /// bulk sender that chooses its pages only then never holds pages claimed for a slot
    /// milliseconds away, behind windows booked after them, while the guest faults on them.
    /// </summary>
    public void WaitForBulkTurn(CancellationToken cancellation)
    {
        if (Unlimited)
        {
            return;
        }

        while (true)
        {
            long now = Stopwatch.GetTimestamp();
            long turn = BulkTurn(now);
            if (turn <= now)
            {
                return;
            }

            WaitUntil(turn, precise: false, cancellation);
        }
    }

    /// <summary>
    /// When <paramref name="bytes"/> of bulk traffic booked at <paramref name="now"/> would have
    /// crossed the link, behind everything booked before (nothing is booked); <paramref name="now"/>
    /// on an unlimited link. What a deadline on the link, such as the pause budget, is checked against:
    /// the clock alone misses the batches already scheduled ahead of it.
    /// </summary>
    public long BulkDoneAt(long now, long bytes) => Unlimited ? now : BulkTurn(now) + (long)(bytes / _bytesPerTick);

    /// <summary>
    /// Waits until a prefetch frame could start on the link within half a millisecond (as
    /// <see cref="Acquire"/> lets it), without booking anything: a sender that claims a window's
    /// pages only then does not hold them while windows booked before them go out.
    /// </summary>
    public void WaitForPrefetchTurn(CancellationToken cancellation)
    {
        while (!Unlimited)
        {
            long turn = PrefetchTurn() - SlackTicks;
            if (turn <= Stopwatch.GetTimestamp())
            {
                return;
            }

            WaitUntil(turn, precise: false, cancellation);
        }
    }

    /// <summary>
    /// Whether a prefetch frame booked at <paramref name="now"/> would have to wait (more than the
    /// half millisecond <see cref="Acquire"/> lets pass) behind the urgent and prefetch traffic
    /// booked before it; nothing is booked.
    /// </summary>
    public bool PrefetchWouldWait(long now)
    {
        if (Unlimited)
        {
            return false;
        }

        return PrefetchTurn() - now > SlackTicks;
    }

    /// <summary>When prefetch traffic booked now would start: after every urgent and prefetch frame booked before it.</summary>
    private long PrefetchTurn()
    {
        lock (_lock)
        {
            return Math.Max(_urgentTime, _prefetchTime);
        }
    }

    /// <summary>How late a sender may start and still not wait (half a millisecond): shorter waits are not worth a sleep.</summary>
    private static readonly long SlackTicks = Stopwatch.Frequency / 2000;

    /// <summary>When bulk traffic booked at <paramref name="now"/> would start (nothing is booked).</summary>
    internal long BulkTurn(long now)
    {
        lock (_lock)
        {
            return Math.Max(_virtualTime, now - _burstTicks);
        }
    }

    /// <summary>
    /// Waits until <paramref name="timestamp"/>. Imprecise waits (bulk and prefetch pacing, whose
    /// absolute schedule repays a late wake-up) only sleep. Precise ones (a fault reply's own
    /// transmission time, tens of microseconds) sleep while more than 100 µs remain and spin
    /// for the rest: a yielding thread may lose the core for a whole scheduler slice, and a
    /// sleeping one wakes a timer tick late.
    /// </summary>
    public static void WaitUntil(long timestamp, bool precise, CancellationToken cancellation)
    {
        long spinTicks = Stopwatch.Frequency / 10_000;
        while (true)
        {
            long left = timestamp - Stopwatch.GetTimestamp();
            if (left <= 0)
            {
                return;
            }

            cancellation.ThrowIfCancellationRequested();
            if (!precise)
            {
                Thread.Sleep(TimeSpan.FromSeconds((double)left / Stopwatch.Frequency));
                return;
            }

            if (left > 2 * spinTicks)
            {
                Thread.Sleep(TimeSpan.FromSeconds((double)(left - spinTicks) / Stopwatch.Frequency));
            }
            else
            {
                Thread.SpinWait(20);
            }
        }
    }

    /// <summary>Books <paramref name="bytes"/> as urgent or bulk (see the class overload).</summary>
    internal long Book(int bytes, bool urgent, long now) => Book(bytes, urgent ? LinkClass.Urgent : LinkClass.Bulk, now);

    /// <summary>
    /// Books <paramref name="bytes"/> on the link at <paramref name="now"/> (Stopwatch ticks)
    /// and returns when they may start. Bulk starts after everything booked before it; urgent
    /// and prefetch start after the traffic of their own and higher classes booked before them
    /// (at once if there is none) and push the lower classes' schedules back by their own
    /// transmission time.
    /// </summary>
    internal long Book(int bytes, LinkClass linkClass, long now)
    {
        long duration = (long)(bytes / _bytesPerTick);
        lock (_lock)
        {
            // The link idles while nobody sends: credit at most one burst of idle time.
            if (_virtualTime < now - _burstTicks)
            {
                _virtualTime = now - _burstTicks;
            }

            switch (linkClass)
            {
                case LinkClass.Bulk:
                    {
                        long start = _virtualTime;
                        _virtualTime += duration;
                        return start;
                    }

                case LinkClass.Urgent:
                    {
                        // Urgent traffic gets no idle credit: it is about latency, not catching up.
                        long start = Math.Max(_urgentTime, now);
                        _urgentTime = start + duration;
                        if (_prefetchTime > start)
                        {
                            _prefetchTime += duration;
                        }

                        _virtualTime += duration;
                        return start;
                    }

                default:
                    {
                        long start = Math.Max(Math.Max(_urgentTime, _prefetchTime), now);
                        _prefetchTime = start + duration;
                        _virtualTime += duration;
                        return start;
                    }
            }
        }
    }

    private static async ValueTask WaitAsync(long ticks, CancellationToken cancellation)
        => await Task.Delay(TimeSpan.FromSeconds((double)ticks / Stopwatch.Frequency), cancellation).ConfigureAwait(false);

    /// <summary>Parses 1Gbit, 100Mbit, 500M, 1G (bits per second), "unlimited" or 0.</summary>
    public static long ParseRate(string text)
    {
        string t = text.Trim().ToLowerInvariant();
        if (t is "unlimited" or "none")
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

/// <summary>Priority classes on the emulated link, highest first.</summary>
public enum LinkClass
{
    /// <summary>The faulted page itself and switchover control frames.</summary>
    Urgent = 0,

    /// <summary>A network fault's locality window: behind every fault reply, ahead of the push.</summary>
    Prefetch = 1,

    /// <summary>Live rounds and the background push.</summary>
    Bulk = 2,
}
