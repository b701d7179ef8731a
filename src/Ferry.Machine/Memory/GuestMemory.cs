using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Ferry.Machine.Memory;

/// <summary>
/// Guest RAM: one contiguous host allocation of 4 KiB page frames, plus the per-page facts that
/// migration needs. This is the seam between the machine and the migration engine.
///
/// Page facts (one <see cref="PageBitmap"/> each):
///   Dirty      written since the last <see cref="CollectDirtyLog"/> (pre-copy rounds).
///   Accessed   read, written or fetched since the last <see cref="StartAccessWindow"/> (working set).
///   Absent     content not here yet (destination of post-copy/hybrid): a hart touching it blocks
///              in <see cref="WaitUntilPresent"/> until <see cref="InstallPage"/> delivers it.
///   Populated  ever written. Invariant: a page that is not populated is all zeros, so it is never
///              read, scanned or sent, and never costs the host memory.
///
/// The hart's software TLB caches host addresses only for pages whose facts are already set
/// (TinyEMU/QEMU's TLB_NOTDIRTY idea): a read entry exists only for a present, accessed page; a
/// write entry only for a present, accessed, dirty, populated page without decoded code. So the
/// fast path never touches these bitmaps, and every operation that clears a fact flushes the
/// translations that depend on it through <see cref="ITranslationCache"/>.
///
/// Threading: bit updates are atomic. Operations that clear facts (<see cref="CollectDirtyLog"/>,
/// <see cref="StartAccessWindow"/>) must run at a safe point: on the hart thread between batches,
/// or while no hart runs (see <c>VirtMachine.AtSafePointAsync</c>). <see cref="InstallPage"/> may run
/// on any thread: absent pages are never in a TLB.
/// </summary>
public sealed unsafe class GuestMemory : IDisposable
{
    public const int PageShift = 12;
    public const int PageSize = 1 << PageShift;
    public const ulong PageMask = PageSize - 1;
    public const ulong DefaultBase = 0x8000_0000;
    public const ulong MaxSize = 64UL << 30;

    private readonly List<ITranslationCache> _translationCaches = [];
    private readonly object _presentLock = new();
    private byte* _host;
    private int _waiters;

    // Destination side: pages whose installation has begun. The destination has a receiver per
    // connection; should the same page come on both at once (a peer that sends it twice), exactly
    // one installs it and counts it as arrived.
    private readonly PageBitmap _installing;

    public GuestMemory(ulong size, ulong baseAddress = DefaultBase)
    {
        if (size == 0 || (size & PageMask) != 0 || size > MaxSize)
        {
            throw new ArgumentOutOfRangeException(nameof(size), $"memory size must be a non-zero multiple of 4 KiB up to {MaxSize >> 30} GiB");
        }

        BaseAddress = baseAddress;
        Size = size;
        PageCount = checked((int)(size >> PageShift));
        // Safety: AllocZeroed is calloc; for sizes this large glibc maps fresh anonymous memory,
        // which the kernel backs lazily with zero pages, so untouched guest RAM costs the host
        // nothing. The pointer lives until Dispose and every access is bounds-checked per page
        // by the callers (TLB fill, Page(), InstallPage).
        _host = (byte*)NativeMemory.AllocZeroed((nuint)size);
        Dirty = new PageBitmap(PageCount);
        Accessed = new PageBitmap(PageCount);
        Absent = new PageBitmap(PageCount);
        Populated = new PageBitmap(PageCount);
        _installing = new PageBitmap(PageCount);
    }

    public ulong BaseAddress { get; }

    public ulong Size { get; }

    public int PageCount { get; }

    public PageBitmap Dirty { get; }

    public PageBitmap Accessed { get; }

    public PageBitmap Absent { get; }

    public PageBitmap Populated { get; }

    /// <summary>Told when a hart touches an absent page; set by the destination's remote pager.</summary>
    public IAbsentPageHandler? AbsentPageHandler { get; set; }

    internal byte* Host => _host;

    public void AddTranslationCache(ITranslationCache cache) => _translationCaches.Add(cache);

    public void RemoveTranslationCache(ITranslationCache cache) => _translationCaches.Remove(cache);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Contains(ulong physicalAddress) => physicalAddress - BaseAddress < Size;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int PageOf(ulong physicalAddress) => (int)((physicalAddress - BaseAddress) >> PageShift);

    /// <summary>The page's bytes. Reading is always safe; writers must use the marking paths below.</summary>
    public ReadOnlySpan<byte> Page(int page)
    {
        CheckPage(page);
        return new ReadOnlySpan<byte>(_host + ((long)page << PageShift), PageSize);
    }

    /// <summary>True when every byte of the page is zero (vectorized scan).</summary>
    public bool IsZeroPage(int page) => !Populated.Get(page) || !Page(page).ContainsAnyExcept((byte)0);

    /// <summary>
    /// Marks the page as written by a device, a page-table walker or the loader: sets
    /// populated, dirty and accessed and drops any decoded code for it.
    /// </summary>
    public void NoteWrite(int page)
    {
        Populated.Set(page);
        Dirty.Set(page);
        Accessed.Set(page);
        foreach (ITranslationCache cache in _translationCaches)
        {
            cache.InvalidateCode(page);
        }
    }

    /// <summary>Writes guest-physical memory from outside a hart (devices, loader, tests).</summary>
    public void WritePhysical(ulong address, ReadOnlySpan<byte> data)
    {
        CheckRange(address, (ulong)data.Length);
        ulong offset = address - BaseAddress;
        int first = (int)(offset >> PageShift);
        int last = data.Length == 0 ? first - 1 : (int)((offset + (ulong)data.Length - 1) >> PageShift);
        for (int p = first; p <= last; p++)
        {
            if (Absent.Get(p))
            {
                throw new InvalidOperationException($"write to absent page {p}");
            }

            NoteWrite(p);
        }

        data.CopyTo(new Span<byte>(_host + offset, data.Length));
    }

    public void ReadPhysical(ulong address, Span<byte> destination)
    {
        CheckRange(address, (ulong)destination.Length);
        new ReadOnlySpan<byte>(_host + (address - BaseAddress), destination.Length).CopyTo(destination);
    }

    /// <summary>
    /// Destination side: delivers a page's content and makes it present. Zero pages are
    /// installed without touching host memory (an unpopulated page is already zero).
    /// Returns false if the page was already present or is being installed by another thread (a
    /// duplicate delivery, ignored): of concurrent deliveries of one page exactly one returns true.
    /// </summary>
    public bool InstallPage(int page, ReadOnlySpan<byte> content)
    {
        CheckPage(page);
        if (!content.IsEmpty && content.Length != PageSize)
        {
            throw new ArgumentException("a page is 4096 bytes", nameof(content));
        }

        if (!Absent.Get(page) || !_installing.Set(page))
        {
            return false;
        }

        Span<byte> target = new(_host + ((long)page << PageShift), PageSize);
        if (content.IsEmpty || !content.ContainsAnyExcept((byte)0))
        {
            if (Populated.Get(page))
            {
                target.Clear();
            }
        }
        else
        {
            content.CopyTo(target);
            Populated.Set(page);
        }

        // A hart waits for a page: its handler learns when the page was installed (before the
        // hart can see it present, so the stall's stages are complete when the stall ends).
        if (Volatile.Read(ref _waiters) != 0)
        {
            AbsentPageHandler?.PageInstalled(page, Stopwatch.GetTimestamp());
        }

        // Interlocked.And is a full fence: the content above is visible before the page is.
        Absent.Clear(page);
        if (Volatile.Read(ref _waiters) != 0)
        {
            lock (_presentLock)
            {
                Monitor.PulseAll(_presentLock);
            }
        }

        return true;
    }

    /// <summary>
    /// Destination side, before the VM runs: sets a page's content as received (no dirty or
    /// accessed marks; the VM has not touched it). Empty or all-zero content makes it zero.
    /// </summary>
    public void LoadPage(int page, ReadOnlySpan<byte> content)
    {
        CheckPage(page);
        Span<byte> target = new(_host + ((long)page << PageShift), PageSize);
        if (content.IsEmpty || !content.ContainsAnyExcept((byte)0))
        {
            if (Populated.Get(page))
            {
                target.Clear();
            }
        }
        else
        {
            if (content.Length != PageSize)
            {
                throw new ArgumentException("a page is 4096 bytes", nameof(content));
            }

            content.CopyTo(target);
            Populated.Set(page);
        }

        foreach (ITranslationCache cache in _translationCaches)
        {
            cache.InvalidateCode(page);
        }
    }

    /// <summary>Destination side, before the VM runs: every page in <paramref name="pages"/> becomes absent.</summary>
    public void MarkAbsent(PageBitmap pages)
    {
        _installing.ClearAll();
        Absent.CopyFrom(pages);
        foreach (ITranslationCache cache in _translationCaches)
        {
            cache.FlushAll();
        }
    }

    /// <summary>
    /// How long a thread that touched an absent page spins, re-checking it, before it blocks.
    /// A network fault served at the link's pace comes back in tens of microseconds (p50 75 to
    /// 110 µs at 1 Gbit/s on the 2-core host of docs/results.md); a blocked thread woken on a
    /// busy core may wait for a scheduler slice to end before it runs again, and a vCPU that
    /// waits on page after page spends that on every one. Measured at 10 Gbit/s (kvstore,
    /// post-copy, 6 moves each): the guest ran at 64 MIPS during the move with 100 µs of spin,
    /// against 30 without; 300 µs gave 48. Zero: block at once.
    /// </summary>
    public TimeSpan AbsentSpin
    {
        get => TimeSpan.FromSeconds((double)_absentSpinTicks / Stopwatch.Frequency);
        set => _absentSpinTicks = (long)(Math.Max(0, value.TotalSeconds) * Stopwatch.Frequency);
    }

    private long _absentSpinTicks = Stopwatch.Frequency / 10_000;

    /// <summary>
    /// Called by a hart (slow path) that touched an absent page. Blocks until the page is
    /// installed or <paramref name="cancellation"/> fires (then returns false and the hart
    /// retries the instruction later). Nothing else in the machine waits.
    /// </summary>
    public bool WaitUntilPresent(int page, CancellationToken cancellation)
    {
        if (!Absent.Get(page))
        {
            return true;
        }

        IAbsentPageHandler handler = AbsentPageHandler
            ?? throw new InvalidOperationException($"page {page} is absent and no absent-page handler is set");
        long start = Stopwatch.GetTimestamp();
        // A waiter first, then the request: a page that arrives while the request is written
        // (on its way already) is then reported installed to the handler.
        Interlocked.Increment(ref _waiters);
        try
        {
            handler.PageNeeded(page, start);

            // Spin first (see AbsentSpin).
            long spinUntil = start + _absentSpinTicks;
            while (Absent.Get(page) && Stopwatch.GetTimestamp() < spinUntil)
            {
                Thread.SpinWait(8);
            }

            if (Absent.Get(page))
            {
                handler.Sleeping();
            }

            lock (_presentLock)
            {
                while (Absent.Get(page))
                {
                    if (cancellation.IsCancellationRequested)
                    {
                        return false;
                    }

                    Monitor.Wait(_presentLock, 20);
                }
            }
        }
        finally
        {
            Interlocked.Decrement(ref _waiters);
            handler.WaitEnded();
        }

        handler.StallEnded(page, start, Stopwatch.GetTimestamp());
        return true;
    }

    /// <summary>Wakes threads blocked in <see cref="WaitUntilPresent"/> so they re-check cancellation.</summary>
    public void WakeWaiters()
    {
        lock (_presentLock)
        {
            Monitor.PulseAll(_presentLock);
        }
    }

    /// <summary>
    /// Moves the dirty log into <paramref name="into"/> (OR) and clears it, then flushes the
    /// writable translations so the next write to each page is logged again. Safe point only.
    /// </summary>
    public void CollectDirtyLog(PageBitmap into)
    {
        Dirty.DrainInto(into);
        foreach (ITranslationCache cache in _translationCaches)
        {
            cache.FlushWritable();
        }
    }

    /// <summary>
    /// Ends the current access-sampling window: moves the accessed bits into
    /// <paramref name="into"/> (OR), clears them and flushes all translations so the next
    /// touch of each page in the new window is recorded. Safe point only.
    /// </summary>
    public void StartAccessWindow(PageBitmap? into)
    {
        if (into is null)
        {
            Accessed.ClearAll();
        }
        else
        {
            Accessed.DrainInto(into);
        }

        foreach (ITranslationCache cache in _translationCaches)
        {
            cache.FlushAll();
        }
    }

    public void Dispose()
    {
        if (_host != null)
        {
            NativeMemory.Free(_host);
            _host = null;
        }
    }

    private void CheckPage(int page)
    {
        if ((uint)page >= (uint)PageCount)
        {
            throw new ArgumentOutOfRangeException(nameof(page), $"page {page} is outside guest RAM ({PageCount} pages)");
        }
    }

    private void CheckRange(ulong address, ulong length)
    {
        ulong offset = address - BaseAddress;
        if (address < BaseAddress || offset > Size || length > Size - offset)
        {
            throw new ArgumentOutOfRangeException(nameof(address), $"0x{address:x}+{length} is outside guest RAM");
        }
    }
}

/// <summary>The hart side of the page facts: what to flush when a fact is cleared.</summary>
public interface ITranslationCache
{
    void FlushAll();

    void FlushWritable();

    void InvalidateCode(int page);
}

/// <summary>Implemented by the migration engine on the destination (the remote pager).</summary>
public interface IAbsentPageHandler
{
    /// <summary>
    /// A hart touched an absent page at <paramref name="blockedAt"/> (Stopwatch ticks) and is
    /// about to wait. May write a short request, but must not wait for anything.
    /// </summary>
    void PageNeeded(int page, long blockedAt);

    /// <summary>
    /// <paramref name="page"/> is being installed at <paramref name="at"/> while some hart waits
    /// (called before the page becomes present). Must not block.
    /// </summary>
    void PageInstalled(int page, long at);

    /// <summary>The page arrived; the hart that blocked at <paramref name="blockedAt"/> runs again at <paramref name="resumedAt"/>.</summary>
    void StallEnded(int page, long blockedAt, long resumedAt);

    /// <summary>
    /// The calling hart thread, which called <see cref="PageNeeded"/>, has spun for
    /// <see cref="GuestMemory.AbsentSpin"/> and the page is still absent: it is about to sleep
    /// until the page is installed.
    /// </summary>
    void Sleeping()
    {
    }

    /// <summary>
    /// The calling hart thread, which called <see cref="PageNeeded"/>, waits no more (the page
    /// arrived, or the wait was cancelled); called before <see cref="StallEnded"/>.
    /// </summary>
    void WaitEnded()
    {
    }
}
