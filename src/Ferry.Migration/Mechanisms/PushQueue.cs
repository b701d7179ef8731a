using System.Collections.Concurrent;
using Ferry.Machine.Memory;

namespace Ferry.Migration.Mechanisms;

/// <summary>
/// The pages still owed to the destination after it resumed (post-copy phase), and the order
/// in which the background push takes them. Each page is claimed exactly once, by the push or
/// by the fault server (an atomic clear of its pending bit), so every page crosses once.
///
/// Locality windows of network faults (hybrid) come before any order (<see cref="NextPrefetch"/>).
/// Orders: linear (ascending); or, for hybrid, the neighbourhood of each recent fault first
/// (the fault server reports faults here), then pages by how recently the VM touched them
/// (from the working-set estimator), then the rest ascending.
/// </summary>
public sealed class PushQueue
{
    private readonly PageBitmap _pending;

    private readonly ConcurrentQueue<int> _faults = new();
    private readonly ConcurrentQueue<(int First, int End, int Skip)> _windows = new();
    private (int Next, int End, int Skip) _window = (0, 0, -1);
    private int[] _recency = [];
    private readonly int _neighbourhood;
    private readonly int _pageCount;
    private int _remaining;
    private int _recencyCursor;
    private int _linearCursor;
    private int _hotspot = -1;
    private int _hotspotOffset;

    public PushQueue(PageBitmap pending, PushOrder order, int neighbourhoodPages)
    {
        _pending = pending;
        _pageCount = pending.BitCount;

        _remaining = pending.PopCount();
        Order = order;
        _neighbourhood = order is PushOrder.FaultNeighbourhood or PushOrder.FaultNeighbourhoodThenRecency ? neighbourhoodPages : 0;
    }

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

    /// <summary>Next page of a queued locality window (already claimed), or -1 when no window has one pending.</summary>
    public int NextPrefetch()
    {
        while (true)
        {
            while (_window.Next < _window.End)
            {
                int page = _window.Next++;
                if (page != _window.Skip && TryClaim(page))
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

    /// <summary>Next page for the push (already claimed), or -1 when none is pending.</summary>
    public int Next()
    {
        while (Remaining > 0)
        {
            // 1. Around the most recent fault: N pages after it (access runs forward), then N/4 before it.
            if (_neighbourhood > 0)
            {
                while (_faults.TryDequeue(out int fault))
                {
                    _hotspot = fault;
                    _hotspotOffset = 1;
                }

                int span = _neighbourhood + (_neighbourhood / 4);
                while (_hotspot >= 0 && _hotspotOffset <= span)
                {
                    int offset = _hotspotOffset++;
                    int page = offset <= _neighbourhood ? _hotspot + offset : _hotspot - (offset - _neighbourhood);
                    if ((uint)page < (uint)_pageCount && TryClaim(page))
                    {
                        return page;
                    }
                }

                _hotspot = -1;
            }

            // 2. Recently touched pages, most recent first.
            while (_recencyCursor < _recency.Length)
            {
                int page = _recency[_recencyCursor++];
                if (TryClaim(page))
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
            if (TryClaim(next))
            {
                return next;
            }
        }

        return -1;
    }
}
