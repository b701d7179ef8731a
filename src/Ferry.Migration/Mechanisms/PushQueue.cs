using System.Collections.Concurrent;
using System.Diagnostics;
using Ferry.Machine.Memory;

namespace Ferry.Migration.Mechanisms;

/// <summary>
/// The pages still owed to the destination after it resumed (post-copy phase), and the order
/// in which the background push takes them. Each page is claimed exactly once, by the push or
/// by the fault server (an atomic clear of its pending bit), so every page crosses once.
///
/// Locality windows of network faults (hybrid) come before any order (<see cref="NextPrefetch"/>).
/// Orders: linear (ascending); or, for hybrid, around recent faults first (the fault server
/// reports faults here), then pages by how recently the VM touched them (from the working-set
/// estimator), then the rest ascending.
/// <para>Around recent faults: a stride the last three faults share (2 pages or more apart,
/// skipping pages nobody asked for) is followed <see cref="StridePages"/> steps ahead; then
/// each of the last <see cref="Pivots"/> faults (newest first) is a pivot that expands in both
/// directions, four pages after it for each one before it (+1, −1, +2, +3, +4, +5, −2, ...), up
/// to N after and N/4 before; a queue takes at most 32 reported faults per page pushed. How far
/// it expands follows how often faults land in a recent pivot's neighbourhood (a running rate):
/// a guest that runs through memory gets all of it, one that scatters its faults (whose
/// neighbours are no likelier to be touched than any page) gets ±1 and the recency order
/// sooner, which holds what it does touch often. A forward sweep (<see cref="SweepFaults"/>
/// faults in a row, each a little ahead of the last) reads ahead only, and on from the newest
/// fault ascending.</para>
/// </summary>
public sealed class PushQueue
{
    private readonly PageBitmap _pending;
    private readonly PageBitmap _unsent;
    private readonly Func<long> _clock;
    private long _heldSince; // when the push claimed the oldest page it holds unwritten; 0: none

    private readonly ConcurrentQueue<int> _faults = new();
    private readonly ConcurrentQueue<(int First, int End, int Skip)> _windows = new();
    private (int Next, int End, int Skip) _window = (0, 0, -1);
    private int[] _recency = [];
    private readonly int _neighbourhood;
    private readonly int _pageCount;
    private int _remaining;
    private int _recencyCursor;
    private int _linearCursor;

    // Push thread only: the pivots (a ring, newest at _newest), each with how far it has expanded.
    private readonly int[] _offsets; // the expansion order: +1, -1, +2, +3, +4, +5, -2, ...
    private readonly int[] _pivot = new int[Pivots];
    private readonly int[] _pivotStep = new int[Pivots];
    private int _newest = -1;
    private int _pivotCount;
    private double _runRate = 1; // share of recent faults that landed in a pivot's neighbourhood
    private int _f1 = -1, _f2 = -1; // the two faults before the last, for strides
    private int _stride, _strideFrom, _strideStep;
    private int _runAhead;          // consecutive faults each a little ahead of the one before (a forward sweep)
    private int _sweepCursor = -1;  // in a sweep: where the ascending read-ahead continues

    /// <summary>Recent faults whose neighbourhoods the push serves.</summary>
    public const int Pivots = 8;

    /// <summary>Steps a detected stride is followed ahead of the last fault.</summary>
    public const int StridePages = 16;

    /// <summary>
    /// Consecutive faults, each ahead of the one before by at most twice the neighbourhood, that
    /// make a forward sweep: the guest runs up through memory (verify's passes, dirty's rewrites).
    /// In a sweep the push reads ahead only (a page behind the guest is touched again only on its
    /// next pass) and, once the pivots are served, goes on ascending from the newest fault instead
    /// of turning to the recency order, as a kernel's sequential read-ahead does, and as QEMU's
    /// post-copy moves its background search to the page last requested (migration/ram.c,
    /// get_queued_page, on its single channel).
    /// </summary>
    public const int SweepFaults = 3;

    /// <summary>Whether the recent faults make a forward sweep (push thread).</summary>
    public bool InSweep => _runAhead >= SweepFaults - 1;

    /// <param name="clock">Timestamps for how long the push holds its pages (tests); default <see cref="Stopwatch.GetTimestamp"/>.</param>
    public PushQueue(PageBitmap pending, PushOrder order, int neighbourhoodPages, Func<long>? clock = null)
    {
        _clock = clock ?? Stopwatch.GetTimestamp;
        _pending = pending;
        _pageCount = pending.BitCount;
        _unsent = new PageBitmap(_pageCount);

        _remaining = pending.PopCount();
        Order = order;
        _neighbourhood = order is PushOrder.FaultNeighbourhood or PushOrder.FaultNeighbourhoodThenRecency ? Math.Max(0, neighbourhoodPages) : 0;
        _offsets = ExpansionOrder(_neighbourhood);
    }

    /// <summary>Offsets from a pivot in the order the push expands it: four after for each one before, N after and N/4 before in all.</summary>
    public static int[] ExpansionOrder(int after)
    {
        int before = after / 4;
        var offsets = new int[after + before];
        int n = 0, back = 0;
        for (int k = 1; k <= after; k++)
        {
            offsets[n++] = k;
            if (back < before && (4 * back) + 1 <= k)
            {
                offsets[n++] = -++back;
            }
        }

        return offsets;
    }

    /// <summary>How much of <see cref="ExpansionOrder"/> each pivot gets now (push thread).</summary>
    public int Expansion => _neighbourhood == 0 ? 0 : Math.Clamp((int)Math.Ceiling(_offsets.Length * _runRate), Math.Min(2, _offsets.Length), _offsets.Length);

    /// <summary>Share of recent faults that landed in a recent pivot's neighbourhood (push thread).</summary>
    public double RunRate => _runRate;

    /// <summary>
    /// Pages in the order the VM last touched them, most recent first (FaultNeighbourhoodThenRecency).
    /// Set once the VM runs at the destination: sorting is kept out of the pause.
    /// </summary>
    public void SetRecency(int[] pages)
    {
        if (Order == PushOrder.FaultNeighbourhoodThenRecency)
        {
            _recency = pages;
        }
    }

    public PushOrder Order { get; }

    public int Remaining => Volatile.Read(ref _remaining);

    public int Total { get; private set; }

    /// <summary>Claims a page for sending (push or fault reply); false if someone else already sent it.</summary>
    public bool TryClaim(int page)
    {
        if (!_pending.Clear(page))
        {
            return false;
        }

        Interlocked.Decrement(ref _remaining);
        return true;
    }

    /// <summary>
    /// The fault server's claim on a page the push claimed but has not written for
    /// <see cref="RescueAfter"/> or longer: the push lost its core while it held a batch (it runs
    /// below the guest and the fault path, and on a small host it may wait milliseconds for a
    /// core), or it sleeps for the link. True once per such page: the fault server then sends it
    /// itself, and the push's copy, identical (the source is paused), arrives second and is
    /// dropped by the destination, which fills only absent pages. A page held for less (a batch
    /// being filled, written within microseconds) is left to the push: a guest that sweeps
    /// memory right behind the push faults on the pages of every batch it fills, and taking them
    /// would send each twice (verify's hybrid sent 13 % more bytes when every held page was
    /// taken). A page the push has written is on the link and is not sent again.
    /// </summary>
    public bool TryRescue(int page)
    {
        long since = Volatile.Read(ref _heldSince);
        return since != 0 && _clock() - since >= RescueAfterTicks && _unsent.Clear(page);
    }

    /// <summary>How long the push must have held its unwritten pages before the fault path takes one.</summary>
    public static readonly TimeSpan RescueAfter = TimeSpan.FromMicroseconds(500);

    private static readonly long RescueAfterTicks = (long)(RescueAfter.TotalSeconds * Stopwatch.Frequency);

    /// <summary>The push wrote these pages (a batch or a window frame): they are on the link.</summary>
    public void Written(ReadOnlySpan<int> pages)
    {
        foreach (int page in pages)
        {
            _unsent.Clear(page);
        }

        Volatile.Write(ref _heldSince, 0);
    }

    /// <summary>A claim by the push (its order or a window): held as unsent until <see cref="Written"/>.</summary>
    private bool ClaimForPush(int page)
    {
        if (!_pending.Get(page))
        {
            return false;
        }

        // Marked before the claim, so that the fault server never sees it claimed and not held.
        _unsent.Set(page);
        if (TryClaim(page))
        {
            if (Volatile.Read(ref _heldSince) == 0)
            {
                Volatile.Write(ref _heldSince, _clock());
            }

            return true;
        }

        _unsent.Clear(page);
        return false;
    }

    /// <summary>The fault server reports a fault so the push can serve its neighbourhood next.</summary>
    public void NoteFault(int page)
    {
        if (_neighbourhood > 0)
        {
            _faults.Enqueue(page);
        }
    }

    /// <summary>
    /// A fault's locality window, pages [first, end) but <paramref name="skip"/> (the faulted page,
    /// already sent): the push sends whatever of it is still pending before anything else.
    /// </summary>
    public void EnqueueWindow(int first, int end, int skip)
    {
        if (first < end)
        {
            _windows.Enqueue((Math.Max(0, first), Math.Min(_pageCount, end), skip));
        }
    }

    /// <summary>Whether a locality window may still have pages to send (push thread).</summary>
    public bool HasWindows => _window.Next < _window.End || !_windows.IsEmpty;

    /// <summary>Next page of a queued locality window (already claimed), or -1 when no window has one pending.</summary>
    public int NextPrefetch()
    {
        while (true)
        {
            while (_window.Next < _window.End)
            {
                int page = _window.Next++;
                if (page != _window.Skip && ClaimForPush(page))
                {
                    return page;
                }
            }

            if (!_windows.TryDequeue(out (int First, int End, int Skip) next))
            {
                return -1;
            }

            _window = (next.First, next.End, next.Skip);
        }
    }

    private void NotePivot(int fault)
    {
        bool near = false;
        for (int i = 0; i < _pivotCount && !near; i++)
        {
            int d = fault - _pivot[i];
            near = d != 0 && d <= _neighbourhood && d >= -Math.Max(1, _neighbourhood / 4);
        }

        if (_pivotCount > 0)
        {
            _runRate += ((near ? 1.0 : 0.0) - _runRate) / 16;
        }

        // A stride: the same step twice, skipping pages nobody has asked for (the page after the
        // previous fault still pending; a guest running through memory got it in a window).
        if (_f1 >= 0 && _f2 >= 0 && fault - _f1 == _f1 - _f2 && Math.Abs(fault - _f1) >= 2
            && _pending.Get(_f1 + Math.Sign(fault - _f1)))
        {
            _stride = fault - _f1;
            _strideFrom = fault;
            _strideStep = 0;
        }

        int ahead = _f1 < 0 ? 0 : fault - _f1;
        _runAhead = ahead > 0 && ahead <= 2 * Math.Max(1, _neighbourhood) ? _runAhead + 1 : 0;
        if (_runAhead == SweepFaults - 1)
        {
            _sweepCursor = fault + 1;   // a sweep begins (again: a guest that wrapped round starts low)
        }
        else if (_runAhead >= SweepFaults)
        {
            _sweepCursor = Math.Max(_sweepCursor, fault + 1);
        }

        _f2 = _f1;
        _f1 = fault;
        _newest = (_newest + 1) % Pivots;
        _pivot[_newest] = fault;
        _pivotStep[_newest] = 0;
        _pivotCount = Math.Min(Pivots, _pivotCount + 1);
    }

    private int AroundFaults()
    {
        while (_stride != 0 && _strideStep < StridePages)
        {
            long page = _strideFrom + ((long)_stride * ++_strideStep);
            if ((ulong)page >= (ulong)_pageCount)
            {
                break;
            }

            if (ClaimForPush((int)page))
            {
                return (int)page;
            }
        }

        _stride = 0;
        int expansion = Expansion;
        bool sweep = InSweep;
        for (int age = 0; age < _pivotCount; age++)
        {
            int i = ((_newest - age) % Pivots + Pivots) % Pivots;
            while (_pivotStep[i] < expansion)
            {
                int offset = _offsets[_pivotStep[i]++];
                int page = _pivot[i] + offset;
                if ((offset > 0 || !sweep) && (uint)page < (uint)_pageCount && ClaimForPush(page))
                {
                    return page;
                }
            }
        }

        // A sweep: read ahead, ascending from the newest fault, until the sweep ends.
        while (sweep && _sweepCursor >= 0 && _sweepCursor < _pageCount)
        {
            int next = _pending.NextSet(_sweepCursor);
            if (next < 0)
            {
                _sweepCursor = _pageCount;
                break;
            }

            _sweepCursor = next + 1;
            if (ClaimForPush(next))
            {
                return next;
            }
        }

        return -1;
    }

    /// <summary>Next page for the push (already claimed), or -1 when none is pending.</summary>
    public int Next()
    {
        while (Remaining > 0)
        {
            // 1. Around recent faults: a stride they share, then each pivot's neighbourhood, newest first.
            if (_neighbourhood > 0)
            {
                // A bounded number per page pushed: faults reported faster than the push runs
                // (a starved push thread) must not keep it from pushing.
                for (int n = 0; n < 4 * Pivots && _faults.TryDequeue(out int fault); n++)
                {
                    NotePivot(fault);
                }

                int page = AroundFaults();
                if (page >= 0)
                {
                    return page;
                }
            }

            // 2. Recently touched pages, most recent first.
            while (_recencyCursor < _recency.Length)
            {
                int page = _recency[_recencyCursor++];
                if (ClaimForPush(page))
                {
                    return page;
                }
            }

            // 3. The rest, ascending.
            int next = _pending.NextSet(_linearCursor);
            if (next < 0)
            {
                if (_linearCursor == 0)
                {
                    return -1;
                }

                _linearCursor = 0;
                continue;
            }

            _linearCursor = next + 1;
            if (ClaimForPush(next))
            {
                return next;
            }
        }

        return -1;
    }
}
