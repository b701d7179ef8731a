using System.Numerics;
using System.Runtime.CompilerServices;
using Ferry.Machine.Board;
using Ferry.Machine.Memory;

namespace Ferry.Migration.Mechanisms;

/// <summary>
/// Estimates a VM's working set from accessed-page sampling: every window (default 100 ms) it
/// collects the pages the VM touched (GuestMemory's accessed bits, cleared for the next
/// window at a safe point) and shifts them into an 8-window history per page (bit 0 = the
/// most recent window). The working set is then a rule over that history: pages accessed in
/// at least m of the last n windows, most-often and most-recently used first under a cap.
/// The host runs one per VM all the time, so a migration finds the estimate ready.
/// A window closes only once the guest has run in it (<see cref="MinInstructionsPerWindow"/>):
/// on a starved host a hart may not run for a whole 100 ms, and an empty window would erase
/// every page from an m-of-n rule although the guest's working set did not change.
/// </summary>
public sealed class WorkingSetEstimator
{
    private readonly VirtMachine _machine;
    private readonly byte[] _history;
    private readonly PageBitmap _window;
    private readonly object _lock = new();
    private readonly ulong _minInstructions;
    private ulong _retiredAtClose;

    /// <summary>The guest progress a window needs before it closes (about 0.1-0.5 ms of guest time).</summary>
    public const ulong MinInstructionsPerWindow = 100_000;

    /// <param name="minInstructionsPerWindow">The guest progress a window needs before it closes (0: every window closes; for tests that set the accessed bits by hand).</param>
    public WorkingSetEstimator(VirtMachine machine, TimeSpan window, ulong minInstructionsPerWindow = MinInstructionsPerWindow)
    {
        _machine = machine;
        _minInstructions = minInstructionsPerWindow;
        Window = window;
        _history = new byte[machine.Memory.PageCount];
        _window = new PageBitmap(machine.Memory.PageCount);
    }

    public TimeSpan Window { get; }

    /// <summary>Spread[b] has byte i = bit i of b: eight pages' window bits, one per history byte.</summary>
    private static readonly ulong[] Spread = Enumerable.Range(0, 256)
        .Select(b => Enumerable.Range(0, 8).Aggregate(0UL, (v, i) => v | ((ulong)((b >> i) & 1) << (8 * i))))
        .ToArray();

    /// <summary>
    /// Recency[h] orders histories most recent first: h with its bits reversed, so that the newest
    /// window (bit 0) weighs most. Comparing raw history bytes would rank the oldest access first.
    /// </summary>
    private static readonly byte[] Recency = Enumerable.Range(0, 256)
        .Select(h => (byte)Enumerable.Range(0, 8).Aggregate(0, (v, i) => v | (((h >> i) & 1) << (7 - i))))
        .ToArray();

    /// <summary>Windows closed so far (the history is meaningful once this reaches the rule's n).</summary>
    public int WindowsClosed { get; private set; }

    /// <summary>Closes windows until cancelled.</summary>
    public async Task RunAsync(CancellationToken cancellation)
    {
        using var timer = new PeriodicTimer(Window);
        try
        {
            while (await timer.WaitForNextTickAsync(cancellation).ConfigureAwait(false))
            {
                await _machine.AtSafePointAsync(CloseWindow).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>
    /// Closes the current window, unless the guest retired fewer than
    /// <see cref="MinInstructionsPerWindow"/> instructions in it (then it goes on into the next).
    /// Safe point only (the machine's AtSafePointAsync, or the VM paused).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // a loop over every page, run a few times a move: compiled optimized up front, never on stack replacement mid-move
    public void CloseWindow()
    {
        lock (_lock)
        {
            ulong retired = _machine.Hart.InstructionsRetired;
            if (retired - _retiredAtClose < _minInstructions)
            {
                return;
            }

            _retiredAtClose = retired;
            _window.ClearAll();
            _machine.Memory.StartAccessWindow(_window);

            // Shift every page's history by one window and add this window's bit, 8 pages per
            // 64-bit word: (h << 1) without carries between bytes, OR the window's bits spread one per byte.
            ReadOnlySpan<byte> bits = System.Runtime.InteropServices.MemoryMarshal.AsBytes((ReadOnlySpan<ulong>)_window.Words);
            Span<ulong> history = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(_history.AsSpan(0, _history.Length & ~7));
            for (int i = 0; i < history.Length; i++)
            {
                history[i] = ((history[i] << 1) & 0xFEFE_FEFE_FEFE_FEFE) | Spread[bits[i]];
            }

            for (int page = _history.Length & ~7; page < _history.Length; page++)
            {
                _history[page] = (byte)((_history[page] << 1) | (_window.Get(page) ? 1 : 0));
            }

            WindowsClosed++;
        }
    }

    /// <summary>
    /// Pages accessed in at least <paramref name="minHits"/> of the last <paramref name="windows"/>
    /// windows, restricted to <paramref name="candidates"/>, at most <paramref name="maxPages"/>
    /// (the most hits first, then the most recent, then the lowest page).
    /// It runs in the switchover's pause: two passes over the candidates and a histogram of the
    /// (hits, recency) ranks, no sort and no allocation but the result (a sort of 16,000 pages
    /// took 9-12 ms of a 20 ms pause on a loaded machine).
    /// </summary>
    public PageBitmap Select(int windows, int minHits, int maxPages, PageBitmap candidates)
    {
        var selected = new PageBitmap(_history.Length);
        int mask = (1 << windows) - 1;
        Span<int> perRank = stackalloc int[RankCount];
        lock (_lock)
        {
            // Pass 1: how many eligible pages hold each rank.
            int eligible = 0;
            ReadOnlySpan<ulong> words = candidates.Words;
            for (int w = 0; w < words.Length; w++)
            {
                for (ulong bits = Quiet(w) ? 0 : words[w]; bits != 0; bits &= bits - 1)
                {
                    int rank = Rank(_history[(w << 6) + BitOperations.TrailingZeroCount(bits)], mask, minHits);
                    if (rank >= 0)
                    {
                        perRank[rank]++;
                        eligible++;
                    }
                }
            }

            // The lowest rank that is still taken, and how many of that rank fit (lowest pages first).
            int cut = 0, atCut = int.MaxValue;
            if (eligible > maxPages)
            {
                int left = maxPages;
                cut = RankCount;
                while (cut > 0 && left > 0)
                {
                    cut--;
                    atCut = Math.Min(left, perRank[cut]);
                    left -= atCut;
                }

                if (maxPages <= 0)
                {
                    return selected;
                }
            }

            // Pass 2: every eligible page above the cut, and the first atCut pages at it.
            for (int w = 0; w < words.Length; w++)
            {
                for (ulong bits = Quiet(w) ? 0 : words[w]; bits != 0; bits &= bits - 1)
                {
                    int page = (w << 6) + BitOperations.TrailingZeroCount(bits);
                    int rank = Rank(_history[page], mask, minHits);
                    if (rank > cut || (rank == cut && atCut-- > 0))
                    {
                        selected.Set(page);
                    }
                }
            }
        }

        return selected;
    }

    /// <summary>True when none of the 64 pages of bitmap word <paramref name="word"/> was touched in any recorded window (eight history bytes at a time).</summary>
    private bool Quiet(int word)
    {
        int first = word << 6;
        if (first + 64 > _history.Length)
        {
            return false; // the tail: page by page
        }

        ReadOnlySpan<ulong> h = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(_history.AsSpan(first, 64));
        return (h[0] | h[1] | h[2] | h[3] | h[4] | h[5] | h[6] | h[7]) == 0;
    }

    /// <summary>Ranks: hits (0..8) major, recency (0..255) minor.</summary>
    private const int RankCount = 9 * 256;

    /// <summary>A page's rank under the rule (higher is kept first), or -1 if it is not in the working set.</summary>
    private static int Rank(byte history, int mask, int minHits)
    {
        if (history == 0)
        {
            return -1;
        }

        int hits = BitOperations.PopCount((uint)(history & mask));
        return hits >= minHits ? (hits << 8) | Recency[history] : -1;
    }

    /// <summary>
    /// Pages of <paramref name="candidates"/> touched in any recorded window, most recent first
    /// (push order), ascending within one history. A counting sort on the history's rank (a
    /// byte): linear, and nothing to compile, right after a resume, while the first faults are
    /// served (a comparison sort here compiled its generic instantiation then, in a host's first move).
    /// </summary>
    public int[] ByRecency(PageBitmap candidates)
    {
        Span<int> next = stackalloc int[257]; // next[r]: where the pages of rank r (0: most recent) go
        lock (_lock)
        {
            foreach (int page in candidates.EnumerateSet())
            {
                byte history = _history[page];
                if (history != 0)
                {
                    next[256 - Recency[history]]++;
                }
            }

            for (int rank = 1; rank <= 256; rank++)
            {
                next[rank] += next[rank - 1];
            }

            var order = new int[next[256]];
            foreach (int page in candidates.EnumerateSet())
            {
                byte history = _history[page];
                if (history != 0)
                {
                    order[next[255 - Recency[history]]++] = page;
                }
            }

            return order;
        }
    }
}
