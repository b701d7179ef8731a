using System.Diagnostics;
using Ferry.Machine.Memory;
using Ferry.Migration.Protocol;
using Ferry.Migration.Transport;

namespace Ferry.Migration.Mechanisms;

/// <summary>
/// Where a strategy's live and pause pages go: one <see cref="PageSender"/> on the main
/// connection, or a <see cref="StripedSender"/> over the bulk connections.
/// </summary>
public interface IPageStream
{
    /// <summary>Sends every page set in <paramref name="pages"/>; returns how many.</summary>
    ValueTask<int> SendAllAsync(PageBitmap pages, PagePhase phase, CancellationToken cancellation);

    /// <summary>
    /// Sends pages until <paramref name="deadline"/> (a <see cref="Stopwatch"/> timestamp);
    /// <paramref name="pages"/> is left holding the pages that went. Returns how many did not.
    /// </summary>
    ValueTask<int> SendUntilAsync(PageBitmap pages, PagePhase phase, long deadline, CancellationToken cancellation);

    /// <summary>Sends whatever is batched and not yet sent.</summary>
    ValueTask FlushAsync(CancellationToken cancellation);
}

/// <summary>
/// Sends guest pages on one connection in batches (zero pages as markers, optional LZ4),
/// paced by the link shaper, and keeps the books: bytes and pages by phase, resends, and the
/// hash of what was last sent for each page. One per connection; not thread-safe.
/// The per-page path allocates nothing (measured in bench/ by PageSenderBenchmarks).
/// </summary>
public sealed class PageSender : IPageStream
{
    private readonly FrameChannel _channel;
    private readonly GuestMemory _memory;
    private readonly PageBatchWriter _batch;
    private readonly SourceBooks _books;
    private readonly SentPageCache? _sent;
    private PagePhase _phase = PagePhase.Live;
    private uint _faultPage = PageBatchWriter.NoFault;
    private int _resentInBatch;

    /// <param name="sent">With a cache, a page sent again whose previous content is still cached goes as a delta (<see cref="PageDelta"/>).</param>
    public PageSender(FrameChannel channel, GuestMemory memory, SourceBooks books, int batchPages, bool compress, SentPageCache? sent = null)
    {
        _channel = channel;
        _memory = memory;
        _books = books;
        _sent = sent;
        _batch = new PageBatchWriter(batchPages, compress);
    }

    /// <summary>Starts a batch of a given phase (flushing any batch of another kind first).</summary>
    public async ValueTask BeginAsync(PagePhase phase, uint faultPage, CancellationToken cancellation)
    {
        if (MustFlushBefore(phase, faultPage))
        {
            await FlushAsync(cancellation).ConfigureAwait(false);
        }

        StartBatch(phase, faultPage);
    }

    /// <summary>Adds a page to the current batch, sending the batch when it is full.</summary>
    public ValueTask SendAsync(int page, CancellationToken cancellation)
        => Add(page) ? FlushAsync(cancellation) : ValueTask.CompletedTask;

    public async ValueTask FlushAsync(CancellationToken cancellation)
    {
        if (_batch.Count == 0)
        {
            return;
        }

        ReadOnlyMemory<byte> payload = _batch.Payload;
        await _channel.SendAsync(MessageType.Pages, payload, cancellation).ConfigureAwait(false);
        Booked(payload.Length);
    }

    // The blocking forms, for the dedicated threads of the post-copy phase (push, fault replies).

    /// <summary>Starts a batch of a given phase (flushing any batch of another kind first) on a dedicated thread.</summary>
    public void Begin(PagePhase phase, uint faultPage, LinkClass linkClass)
    {
        if (MustFlushBefore(phase, faultPage))
        {
            Flush(linkClass);
        }

        StartBatch(phase, faultPage);
    }

    private bool MustFlushBefore(PagePhase phase, uint faultPage) => _batch.Count > 0 && (phase != _phase || faultPage != _faultPage);

    private void StartBatch(PagePhase phase, uint faultPage)
    {
        _phase = phase;
        _faultPage = faultPage;
        if (_batch.Count == 0)
        {
            _batch.Begin(phase, faultPage);
        }
    }

    /// <summary>Adds a page to the current batch; true when the batch is full and must be flushed.</summary>
    public bool Add(int page)
    {
        ulong hash;
        if (_sent is null)
        {
            hash = _batch.Add(page, _memory.Page(page));
        }
        else
        {
            hash = _batch.Add(page, _memory.Page(page), _sent.Get(page));
            _sent.Store(page, _batch.LastContent);
        }

        _books.Sent.Record(page, hash);
        if (!_books.EverSent.Set(page))
        {
            _resentInBatch++;
        }

        return _batch.IsFull;
    }

    public int Count => _batch.Count;

    /// <summary>Waits until a prefetch frame could start on the link (see <see cref="LinkShaper.WaitForPrefetchTurn"/>).</summary>
    public void WaitForPrefetchTurn() => _channel.WaitForPrefetchTurn();

    /// <summary>Waits until a bulk batch could start on the link now (see <see cref="LinkShaper.WaitForBulkTurn"/>).</summary>
    public void WaitForBulkTurn() => _channel.WaitForBulkTurn();

    /// <summary>Sends the batch in <paramref name="linkClass"/> from the calling thread.</summary>
    public void Flush(LinkClass linkClass)
    {
        if (_batch.Count == 0)
        {
            return;
        }

        ReadOnlyMemory<byte> payload = _batch.Payload;
        _channel.Send(MessageType.Pages, payload, linkClass);
        Booked(payload.Length);
    }

    /// <summary>
    /// Sends a fault reply as urgent traffic, stamped with its time at the source: queued since
    /// <paramref name="requestArrived"/>, then on the link (it returns once the reply has
    /// crossed the emulated link, so the link time includes the page's own transmission).
    /// </summary>
    public void FlushFaultReply(long requestArrived)
    {
        if (_batch.Count == 0)
        {
            return;
        }

        long ready = System.Diagnostics.Stopwatch.GetTimestamp();
        _batch.StampSourceQueue((ready - requestArrived) * 1_000_000_000 / System.Diagnostics.Stopwatch.Frequency);
        ReadOnlyMemory<byte> payload = _batch.Payload;
        _channel.Send(MessageType.Pages, payload, LinkClass.Urgent, untilSent: true, new SendStamp(PageBatchWriter.FaultLinkStampOffset, ready));
        Booked(payload.Length);
    }

    private void Booked(int payloadLength)
    {
        _books.Counters.AddPages(_phase, _batch.Count, _batch.ZeroPages, _resentInBatch, payloadLength + FrameChannel.HeaderSize);
        _books.Counters.AddDeltaPages(_batch.DeltaPages);
        _resentInBatch = 0;
        _batch.Begin(_phase, _faultPage);
    }

    /// <summary>Sends every page set in <paramref name="pages"/>, ascending; returns how many.</summary>
    public async ValueTask<int> SendAllAsync(PageBitmap pages, PagePhase phase, CancellationToken cancellation)
    {
        await BeginAsync(phase, PageBatchWriter.NoFault, cancellation).ConfigureAwait(false);
        int n = 0;
        for (int page = pages.NextSet(0); page >= 0; page = pages.NextSet(page + 1))
        {
            await SendAsync(page, cancellation).ConfigureAwait(false);
            n++;
        }

        await FlushAsync(cancellation).ConfigureAwait(false);
        return n;
    }

    /// <summary>
    /// Sends pages in ascending order while each would have crossed the link by
    /// <paramref name="deadline"/> (a <see cref="Stopwatch"/> timestamp): the clock, and on an
    /// emulated link the link's schedule with the batch being filled (as if every page went
    /// whole), since a batch is booked only once full, at most 32 pages (1 ms at 1 Gbit/s)
    /// after its first page was checked. <paramref name="pages"/> is left holding the pages that
    /// went (the rest are cleared from it: they are still owed). Returns how many were not sent.
    /// </summary>
    public async ValueTask<int> SendUntilAsync(PageBitmap pages, PagePhase phase, long deadline, CancellationToken cancellation)
    {
        await BeginAsync(phase, PageBatchWriter.NoFault, cancellation).ConfigureAwait(false);
        int left = 0;
        bool over = false;
        for (int page = pages.NextSet(0); page >= 0; page = pages.NextSet(page + 1))
        {
            over = over || Stopwatch.GetTimestamp() >= deadline
                || _channel.BulkDoneAt(_batch.Payload.Length + PageBatchWriter.EntryHeaderSize + GuestMemory.PageSize) > deadline;
            if (over)
            {
                pages.Clear(page);
                left++;
                continue;
            }

            await SendAsync(page, cancellation).ConfigureAwait(false);
        }

        await FlushAsync(cancellation).ConfigureAwait(false);
        return left;
    }
}

/// <summary>The source's books, shared by its page senders.</summary>
public sealed class SourceBooks(int pageCount)
{
    public TransferCounters Counters { get; } = new();

    /// <summary>Hash of the content last sent for each page (its digest is checked by the destination before resuming).</summary>
    public PageHashLedger Sent { get; } = new(pageCount);

    /// <summary>Pages sent at least once (a second send is a resend).</summary>
    public PageBitmap EverSent { get; } = new(pageCount);
}
