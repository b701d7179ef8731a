using System.Diagnostics;
using Ferry.Machine.Board;
using Ferry.Machine.Memory;
using Ferry.Migration.Mechanisms;
using Ferry.Migration.Metrics;
using Ferry.Migration.Protocol;
using Ferry.Migration.Transport;

namespace Ferry.Migration.Strategies;

/// <summary>What a strategy policy works with on the source: the mechanisms and the books.</summary>
internal sealed class SourceContext
{
    private readonly long _start;
    private readonly PageBitmap _scratch;

    public SourceContext(IMigrationSource vm, MigrationOptions options, StrategyPolicy policy, IPageStream sender, SourceBooks books,
        LinkShaper shaper, MigrationProgress progress, WorkingSetEstimator estimator, long start)
    {
        Vm = vm;
        Options = options;
        Policy = policy;
        Sender = sender;
        Books = books;
        Shaper = shaper;
        Progress = progress;
        Estimator = estimator;
        _start = start;
        Delivered = new PageBitmap(Memory.PageCount);
        _scratch = new PageBitmap(Memory.PageCount);
    }

    public IMigrationSource Vm { get; }

    public VirtMachine Machine => Vm.Machine;

    public GuestMemory Memory => Vm.Machine.Memory;

    public MigrationOptions Options { get; }

    /// <summary>The migration's strategy: the knobs that depend on it.</summary>
    public StrategyPolicy Policy { get; }

    public IPageStream Sender { get; }

    public SourceBooks Books { get; }

    public LinkShaper Shaper { get; }

    public MigrationProgress Progress { get; }

    public WorkingSetEstimator Estimator { get; }

    /// <summary>Pages whose current content the destination has (sent, and not dirtied since).</summary>
    public PageBitmap Delivered { get; }

    public List<RoundReport> Rounds { get; } = [];

    /// <summary>The working set chosen for the pause (hybrid), for the report.</summary>
    public long WorkingSetPages { get; set; }

    public TimeSpan Elapsed => Stopwatch.GetElapsedTime(_start);

    /// <summary>Populated pages the destination does not have.</summary>
    public PageBitmap Undelivered()
    {
        var pages = new PageBitmap(Memory.PageCount);
        pages.CopyFrom(Memory.Populated);
        pages.AndNot(Delivered);
        return pages;
    }

    public void MarkDelivered(PageBitmap pages) => Delivered.Or(pages);

    /// <summary>Collects the dirty log at a safe point; pages written since are no longer delivered.</summary>
    public async Task<PageBitmap> CollectDirtyAsync()
    {
        var dirty = new PageBitmap(Memory.PageCount);
        await Machine.AtSafePointAsync(() => Memory.CollectDirtyLog(dirty)).ConfigureAwait(false);
        Delivered.AndNot(dirty);
        return dirty;
    }

    /// <summary>
    /// One round of live copy: sends the pages, then collects what the VM dirtied meanwhile
    /// (no longer delivered) and books the round.
    /// </summary>
    public async Task<(PageBitmap Dirty, RoundReport Report)> SendRoundAsync(int round, PageBitmap toSend, CancellationToken cancellation)
    {
        Progress.Round = round;
        long start = Stopwatch.GetTimestamp();
        long bytesBefore = Books.Counters.Bytes(PagePhase.Live);
        int pages = await Sender.SendAllAsync(toSend, PagePhase.Live, cancellation).ConfigureAwait(false);
        MarkDelivered(toSend);
        TimeSpan duration = Stopwatch.GetElapsedTime(start);
        long bytes = Books.Counters.Bytes(PagePhase.Live) - bytesBefore;

        PageBitmap dirty = await CollectDirtyAsync().ConfigureAwait(false);
        int dirtied = dirty.PopCount();
        // What the rest would cost: its pages at what this round's pages took on the wire each
        // (less than a page with zero pages, LZ4 or deltas; at least a page for a round of new
        // pages, whose resends will not be zero).
        double bytesPerPage = pages > 0 && Options.DeltaCacheBytes > 0
            ? Math.Max(bytes / (double)pages, MinBytesPerResentPage)
            : GuestMemory.PageSize + PageBatchEntryOverhead;
        double expected = dirtied * bytesPerPage / BandwidthBytesPerSecond() * 1000;
        var report = new RoundReport(round, pages, bytes, duration.TotalMilliseconds, dirtied,
            duration.TotalSeconds > 0 ? dirtied / duration.TotalSeconds : 0, expected);
        Rounds.Add(report);
        return (dirty, report);
    }

    /// <summary>
    /// Post-copy and hybrid: the configured passes over memory while the VM still runs (the
    /// first sends every populated page, each later one what the previous one saw dirtied), so
    /// that the VM resumes at the destination with fewer pages absent. None by default.
    /// </summary>
    public async Task LivePassesAsync(int passes, CancellationToken cancellation)
    {
        PageBitmap toSend = Undelivered();
        for (int pass = 0; pass < passes; pass++)
        {
            (toSend, _) = await SendRoundAsync(pass, toSend, cancellation).ConfigureAwait(false);
        }
    }

    private const int PageBatchEntryOverhead = 7;

    /// <summary>The least a page sent again is expected to cost on the wire (a small delta and its header).</summary>
    private const double MinBytesPerResentPage = 64;

    /// <summary>The link rate if capped, else the rate measured so far (never below 1 MB/s).</summary>
    public double BandwidthBytesPerSecond()
    {
        if (!Shaper.Unlimited)
        {
            return Shaper.BitsPerSecond / 8.0;
        }

        double seconds = Math.Max(Elapsed.TotalSeconds, 1e-3);
        return Math.Max(Books.Counters.TotalPageBytes / seconds, 1e6);
    }

    /// <summary>The working set under the configured rule and caps, among pages not yet delivered (most-used first when a cap binds).</summary>
    public PageBitmap WorkingSet()
    {
        _scratch.CopyFrom(Memory.Populated);
        _scratch.AndNot(Delivered);
        long capPages = Policy.WorkingSetCap(Options) / GuestMemory.PageSize;
        WorkingSetBudgetPages = PauseBudgetPages();
        if (WorkingSetBudgetPages is long budget)
        {
            capPages = Math.Min(capPages, budget);
        }

        PageBitmap ws = Estimator.Select(Options.WorkingSetWindows, Options.WorkingSetMinHits, (int)Math.Min(int.MaxValue, capPages), _scratch);
        WorkingSetPages = ws.PopCount();
        return ws;
    }

    /// <summary>Pages chosen for the pause that the pause budget's deadline left for after the resume.</summary>
    public int PausePagesDeferred { get; set; }

    /// <summary>What the pause budget allowed the working set (pages), or null where the link's rate is not known.</summary>
    public long? WorkingSetBudgetPages { get; private set; }

    /// <summary>
    /// The part of a pause that is not the working set: the final dirty collection, the CPU and
    /// device state with the map of absent pages, and the destination's resume (post-copy's whole
    /// pause: 0.3-0.6 ms measured on a 256 MiB guest at 1 Gbit/s).
    /// </summary>
    public static readonly TimeSpan PauseReserve = TimeSpan.FromMilliseconds(1);

    /// <summary>
    /// Chains per virtqueue whose buffers a working set's pause carries (with the rings): a network
    /// card's next 16 receive buffers, about 8 pages, where all its posted ones are ~100 (4 ms at
    /// 1 Gbit/s, which the push sends first instead).
    /// </summary>
    public const int DeviceChainsInPause = 16;

    /// <summary>Below this much sent, an uncapped link's rate is not yet measured.</summary>
    private const long MinMeasuredBytes = 4L << 20;

    /// <summary>
    /// Pages that fit the pause budget (less <see cref="PauseReserve"/>) at the link's rate: its
    /// cap, or on an uncapped link the rate measured while sending live (at least 4 MiB); null
    /// when neither is known (then only the byte cap binds).
    /// </summary>
    public long? PauseBudgetPages()
    {
        double? rate = !Shaper.Unlimited ? Shaper.BitsPerSecond / 8.0
            : Books.Counters.TotalPageBytes >= MinMeasuredBytes ? BandwidthBytesPerSecond() : null;
        if (rate is not double r)
        {
            return null;
        }

        double seconds = Math.Max(0, (Policy.PauseBudget(Options) - PauseReserve).TotalSeconds);
        return (long)(r * seconds / (GuestMemory.PageSize + PageBatchEntryOverhead));
    }

    /// <summary>The link's rate in pages per second where known (capped, or measured live), else null.</summary>
    public double? LinkPagesPerSecond()
        => !Shaper.Unlimited || Books.Counters.TotalPageBytes >= MinMeasuredBytes
            ? BandwidthBytesPerSecond() / (GuestMemory.PageSize + PageBatchEntryOverhead) : null;

    /// <summary>Auto-converge's steps: the guest's throttle from each one on.</summary>
    public List<ThrottleStep> Throttle { get; } = [];

    /// <summary>Auto-converge: 20 % at first, then 10 points more, up to 99 %.</summary>
    public void StepThrottle(int round)
    {
        double current = Machine.Throttle;
        double next = current == 0 ? 0.2 : Math.Min(VirtMachine.MaxThrottle, current + 0.1);
        if (next > current)
        {
            Machine.Throttle = next;
            Throttle.Add(new ThrottleStep(Elapsed.TotalMilliseconds, round, next * 100));
        }
    }

    /// <summary>What the policy decided and why (auto), for the report.</summary>
    public List<StrategyDecision> Decisions { get; } = [];
}
