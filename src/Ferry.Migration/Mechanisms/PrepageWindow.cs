using System.Diagnostics;
using System.Runtime.CompilerServices;
using Ferry.Machine.Memory;
using Ferry.Migration.Metrics;

namespace Ferry.Migration.Mechanisms;

/// <summary>
/// Hybrid's adaptive locality window: which neighbours of a network fault are worth fetching
/// with it, learnt from the prefetch hit rate measured at each distance from the fault.
/// <para>Economics. A prefetched page crosses the link once whatever happens (the push would
/// send it anyway), so a wasted one costs no bytes, only its time on the link right behind the
/// faulted page, which the next fault may have to wait out; a hit saves a whole fault's stall.
/// So a neighbour at distance d is worth fetching when <c>hitRate(d) × stall ≥ linkTime(page)</c>,
/// both measured here: the stall as a running mean of this migration's stalls, a page's link
/// time as the running mean of the time a one-page fault reply spent on the link at the source. The window
/// extends on each side (up to the configured ¼ before and ¾ after the fault) as far as the
/// running sum of <c>hitRate(d) − linkTime / stall</c> is largest, so a far distance that pays
/// pulls in nearer ones that pay a little less.</para>
/// <para>A hit is a prefetched page the guest touched within <see cref="Horizon"/> of its
/// request (one that had not even arrived by then is a miss): later touches are left to the push, which serves the neighbourhoods of recent
/// faults anyway and costs the next fault nothing. Rates per distance are running (counts
/// halve past <see cref="SampleCap"/>), so the window follows a guest that changes its ways.
/// Every <see cref="ProbeEvery"/>-th window is a probe twice as wide as the current one (and a
/// few pages more), so that distances just outside it keep being measured. Until a distance
/// has samples its rate is taken as that of the farthest distance measured on its side (½
/// before any), and a window reaches at most that same step past the farthest distance
/// measured: a fresh window is 2 pages before the fault and 4 after, and widens as fast as its
/// hits come in (a window of 64 on a guest that scatters would waste most of what it fetched
/// until its first horizon passed).</para>
/// <para>Runs on the hart's thread (one hart: one fault at a time), allocation-free.</para>
/// </summary>
public sealed class PrepageWindow
{
    /// <summary>One window in this many is a probe (twice as wide as the window chosen, and a little more).</summary>
    public const int ProbeEvery = 8;

    /// <summary>Samples per distance past which its counts halve.</summary>
    public const double SampleCap = 64;

    /// <summary>The lowest hit rate that is ever worth a page on the link (an unlimited link costs next to nothing, but not nothing).</summary>
    public const double MinThreshold = 0.1;

    /// <summary>The threshold until both a stall and a link time have been measured.</summary>
    public const double DefaultThreshold = 0.25;

    private const int RingSize = 1024;

    /// <summary>How long after its request a prefetched page's touch counts as a hit.</summary>
    public static readonly TimeSpan Horizon = TimeSpan.FromMilliseconds(10);

    private readonly PageBitmap _absent;
    private readonly PageBitmap _accessed;
    private readonly int _pageCount;
    private readonly long _horizonTicks;
    private readonly double[] _sent; // by distance + MaxBefore (running)
    private readonly double[] _hits;
    private readonly long[] _totalSent; // by distance + MaxBefore (the whole migration, for reports)
    private readonly long[] _totalHits;
    private readonly int[] _owner; // per page: 1 + the fault whose window requested it as a neighbour (a page is requested once)
    private readonly Pending[] _ring = new Pending[RingSize];
    private int _ringHead;
    private int _ringCount;
    private long _windows;
    private int _measuredBefore; // the farthest distances evaluated so far, each side
    private int _measuredAfter;
    private double _linkTicks; // running mean link time of a one-page reply; 0: none yet
    private double _stallTicks; // running mean; 0: none yet

    private readonly record struct Pending(int Pivot, int First, int End, long At);

    /// <param name="localityPages">The widest window: ¼ of it before the fault, the rest (with the fault) after.</param>
    public PrepageWindow(PageBitmap absent, PageBitmap accessed, int localityPages)
    {
        _absent = absent;
        _accessed = accessed;
        _pageCount = absent.BitCount;
        int window = Math.Max(1, localityPages);
        MaxBefore = window / 4;
        MaxAfter = window - MaxBefore - 1;
        _horizonTicks = (long)(Horizon.TotalSeconds * Stopwatch.Frequency);
        int distances = MaxBefore + MaxAfter + 1;
        _sent = new double[distances];
        _hits = new double[distances];
        _totalSent = new long[distances];
        _totalHits = new long[distances];
        _owner = new int[_pageCount];
        Before = MaxBefore;
        After = MaxAfter;
    }

    public int MaxBefore { get; }

    public int MaxAfter { get; }

    /// <summary>Pages before the fault in the last window chosen.</summary>
    public int Before { get; private set; }

    /// <summary>Pages after the fault in the last window chosen.</summary>
    public int After { get; private set; }

    /// <summary>Hit rate a page must have to be worth its link time: link time per page over a fault's stall.</summary>
    public double Threshold => _linkTicks > 0 && _stallTicks > 0
        ? Math.Clamp(_linkTicks / _stallTicks, MinThreshold, 1.0)
        : DefaultThreshold;

    /// <summary>
    /// The running hit rate at <paramref name="distance"/> pages from the fault; where it has
    /// not been measured, the rate at the farthest distance measured on that side (a guest's
    /// runs go on, its scatter stays scattered), or ½ before anything was measured.
    /// </summary>
    public double HitRate(int distance)
    {
        int i = distance + MaxBefore;
        if (_sent[i] == 0)
        {
            int reach = distance < 0 ? -_measuredBefore : _measuredAfter;
            i = reach + MaxBefore;
            if (reach == 0 || _sent[i] == 0)
            {
                return 0.5;
            }
        }

        return (_hits[i] + 0.5) / (_sent[i] + 1);
    }

    /// <summary>Neighbours evaluated at <paramref name="distance"/> over the whole migration.</summary>
    public long Evaluated(int distance) => _totalSent[distance + MaxBefore];

    /// <summary>Of those, hits.</summary>
    public long Hits(int distance) => _totalHits[distance + MaxBefore];

    /// <summary>A fault's stall ended: it took <paramref name="ticks"/>.</summary>
    public void NoteStall(long ticks)
    {
        if (ticks > 0)
        {
            _stallTicks = _stallTicks == 0 ? ticks : _stallTicks + ((ticks - _stallTicks) / 16);
        }
    }

    /// <summary>
    /// A one-page fault reply spent <paramref name="ticks"/> on the link at the source (its
    /// transmission, and any wait; less when the shaper had credit): a running mean.
    /// </summary>
    public void NoteLinkTime(long ticks)
    {
        if (ticks > 0)
        {
            _linkTicks = _linkTicks == 0 ? ticks : _linkTicks + ((ticks - _linkTicks) / 16);
        }
    }

    /// <summary>
    /// The window for a fault on <paramref name="page"/> at <paramref name="now"/>: evaluates the
    /// windows whose horizon has passed, then chooses. The caller requests [first, end),
    /// reports each neighbour it requests with <see cref="Requested"/>, then calls <see cref="Sent"/>.
    /// </summary>
    public (int First, int End) Choose(int page, long now)
    {
        Evaluate(now, force: _ringCount == RingSize);
        // Never more than a step past the distances measured so far (a fresh window starts
        // small, and widens as fast as its hits come in).
        double threshold = Threshold;
        int before = Math.Min(Extent(-1, MaxBefore, threshold), Step(_measuredBefore, 2, MaxBefore));
        int after = Math.Min(Extent(1, MaxAfter, threshold), Step(_measuredAfter, 4, MaxAfter));
        if (_windows % ProbeEvery == ProbeEvery - 1)
        {
            // A probe: twice as far as the window reaches now, and a little more, so that a
            // distance just outside it is measured and the window can grow a step at a time.
            before = Step(before, 2, MaxBefore);
            after = Step(after, 4, MaxAfter);
        }

        Before = before;
        After = after;

        return (Math.Max(0, page - Before), Math.Min(_pageCount, page + After + 1));
    }

    /// <summary><paramref name="page"/> was requested as a neighbour in the window of a fault on <paramref name="fault"/>.</summary>
    public void Requested(int page, int fault) => _owner[page] = fault + 1;

    /// <summary>
    /// The window [<paramref name="first"/>, <paramref name="end"/>) of a fault on
    /// <paramref name="page"/> went out at <paramref name="now"/> (its neighbours reported): it is
    /// evaluated once its horizon has passed. A fixed window is booked the same way, so its hit
    /// rates are measured too.
    /// </summary>
    public void Sent(int page, int first, int end, long now)
    {
        Evaluate(now, force: _ringCount == RingSize);
        _ring[(_ringHead + _ringCount) % RingSize] = new Pending(page, first, end, now);
        _ringCount++;
        _windows++;
    }

    /// <summary>
    /// Over the whole migration so far, per distance with a neighbour requested: requested,
    /// evaluated at their horizon, hit by then, and touched by now (whenever).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // once per move: compiled optimized up front, never on stack replacement mid-move
    public PrefetchDistance[] ByDistance()
    {
        var requested = new long[_sent.Length];
        var touched = new long[_sent.Length];
        for (int p = 0; p < _pageCount; p++)
        {
            int d = p - (_owner[p] - 1) + MaxBefore;
            if (_owner[p] != 0 && (uint)d < (uint)requested.Length)
            {
                requested[d]++;
                if (_accessed.Get(p))
                {
                    touched[d]++;
                }
            }
        }

        var rows = new List<PrefetchDistance>();
        for (int i = 0; i < requested.Length; i++)
        {
            if (requested[i] > 0)
            {
                rows.Add(new PrefetchDistance(i - MaxBefore, requested[i], _totalSent[i], _totalHits[i], touched[i]));
            }
        }

        return [.. rows];
    }

    /// <summary>After a reconnection nothing requested is known to come: the windows in flight are not evaluated.</summary>
    public void Forget()
    {
        _ringCount = 0;
        Array.Clear(_owner);
    }

    private static int Step(int reach, int more, int max) => Math.Min(max, (2 * reach) + more);

    private int Extent(int direction, int max, double threshold)
    {
        double sum = 0, best = 0;
        int extent = 0;
        for (int k = 1; k <= max; k++)
        {
            sum += HitRate(direction * k) - threshold;
            if (sum > best)
            {
                best = sum;
                extent = k;
            }
        }

        return extent;
    }

    /// <summary>Books the hits and misses of every window whose horizon has passed (or the oldest, when <paramref name="force"/>).</summary>
    private void Evaluate(long now, bool force)
    {
        while (_ringCount > 0)
        {
            Pending w = _ring[_ringHead];
            if (!force && now - w.At < _horizonTicks)
            {
                return;
            }

            force = false;
            _ringHead = (_ringHead + 1) % RingSize;
            _ringCount--;
            for (int p = w.First; p < w.End; p++)
            {
                if (p == w.Pivot || _owner[p] != w.Pivot + 1)
                {
                    continue;
                }

                // A fixed window shifted to stay inside RAM (a fault on one of the last pages)
                // reaches past the distances measured here: those pages are not booked.
                int d = p - w.Pivot + MaxBefore;
                if ((uint)d >= (uint)_sent.Length)
                {
                    continue;
                }

                // Not here by the horizon (the push took the window's rest) counts as a miss: it
                // was no use within it (a distance that never arrived in time must not stay in
                // the window on its prior).
                bool hit = _accessed.Get(p);
                _measuredBefore = Math.Max(_measuredBefore, w.Pivot - p);
                _measuredAfter = Math.Max(_measuredAfter, p - w.Pivot);
                _totalSent[d]++;
                _sent[d]++;
                if (hit)
                {
                    _totalHits[d]++;
                    _hits[d]++;
                }

                if (_sent[d] > SampleCap)
                {
                    _sent[d] /= 2;
                    _hits[d] /= 2;
                }
            }
        }
    }
}
