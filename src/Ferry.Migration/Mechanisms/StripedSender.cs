using System.Diagnostics;
using System.Runtime.CompilerServices;
using Ferry.Machine.Memory;
using Ferry.Migration.Protocol;
using Ferry.Migration.Transport;

namespace Ferry.Migration.Mechanisms;

/// <summary>
/// The bulk pages striped over a migration's N bulk connections (<c>--channels N</c>, as QEMU's
/// multifd): each connection has a lane, a thread of its own at bulk priority with its own page
/// senders and buffers (reused: nothing is allocated per batch), all lanes pacing on the
/// migration's one <see cref="LinkShaper"/>, so N channels together never exceed the link.
///
/// Ordering. A page always travels on the same lane (<see cref="LaneOf"/>: its 64-page chunk,
/// hashed), so every copy of a page, from any round, pass or the pause, crosses one ordered
/// connection: a later copy can never be overtaken by an older one on another connection, and a
/// delta (<see cref="PageDelta"/>) is always applied to the copy it was computed against (each
/// lane has its own cache of what it sent). What crosses lanes is only the switchover: after the
/// pause pages every lane sends <see cref="MessageType.ChannelSync"/> (<see cref="SyncAsync"/>),
/// and the destination checks the pages against StateBundle's digest only once every lane's
/// marker has been received. This is cheaper than QEMU's sync per round (no stall or round trip
/// per round, nothing added to each page on the wire) and as sound, because the only pages that
/// can be sent twice are the ones before the switchover; after it every page crosses once.
/// </summary>
public sealed class StripedSender : IPageStream, IDisposable
{
    /// <summary>Pages per chunk that share a lane (256 KiB: batches of neighbours stay whole).</summary>
    public const int ChunkShift = 6;

    /// <summary>
    /// The kernel buffers of each bulk connection, at each end (as the push's on the main
    /// connection): what a lane has in flight beyond the link stays small, so that when the
    /// pause's deadline stops the lanes, N connections' backlogs do not all still have to drain
    /// into the destination before the state can be checked.
    /// </summary>
    public const int KernelBufferBytes = BackgroundPush.KernelBufferBytes;

    private readonly Lane[] _lanes;
    private readonly SourceBooks _books;
    private volatile bool _stopping;

    // The job the lanes run (one at a time: set before they are released, read by them).
    private Job _job;
    private PageBitmap? _pages;
    private PagePhase _phase;
    private long _deadline;
    private PushQueue? _queue;
    private PageSender? _prefetch;
    private Func<bool>? _stop;
    private int _pending, _done, _left;
    private Exception? _error;
    private TaskCompletionSource? _finished;

    /// <param name="channels">The bulk connections, in index order (all paced by one link shaper).</param>
    /// <param name="deltaCacheBytes">With deltas, the cache is split over the lanes (a page's lane keeps its content).</param>
    public StripedSender(FrameChannel[] channels, GuestMemory memory, SourceBooks books, int batchPages, bool compress, long deltaCacheBytes)
    {
        if (channels.Length is < 2 or > Hello.MaxChannels)
        {
            throw new ArgumentOutOfRangeException(nameof(channels), $"striping takes 2..{Hello.MaxChannels} channels");
        }

        _books = books;
        _lanes = new Lane[channels.Length];
        for (int i = 0; i < channels.Length; i++)
        {
            SentPageCache? cache = deltaCacheBytes > 0 ? new SentPageCache(deltaCacheBytes / channels.Length) : null;
            var lane = new Lane(i, channels[i],
                new PageSender(channels[i], memory, books, batchPages, compress, cache),
                new PageSender(channels[i], memory, books, BackgroundPush.BatchPages, compress));
            _lanes[i] = lane;
            lane.Thread = DedicatedThread.Start($"ferry-bulk-{i}", DedicatedThread.BulkNice, () => RunLane(lane));
        }
    }

    public int Count => _lanes.Length;

    /// <summary>The lane (bulk connection) that carries <paramref name="page"/>, always the same one.</summary>
    public static int LaneOf(int page, int lanes) => (int)(((uint)(page >> ChunkShift) * 0x9E37_79B1u) >> 16) % lanes;

    public async ValueTask<int> SendAllAsync(PageBitmap pages, PagePhase phase, CancellationToken cancellation)
    {
        (int done, _) = await RunAsync(Job.Send, pages, phase, long.MaxValue, cancellation).ConfigureAwait(false);
        return done;
    }

    /// <summary>As <see cref="PageSender.SendUntilAsync"/>: pages not sent by the deadline are cleared from <paramref name="pages"/>; returns how many.</summary>
    public async ValueTask<int> SendUntilAsync(PageBitmap pages, PagePhase phase, long deadline, CancellationToken cancellation)
    {
        (_, int left) = await RunAsync(Job.Send, pages, phase, deadline, cancellation).ConfigureAwait(false);
        return left;
    }

    /// <summary>Every lane sends what it holds (it holds nothing between jobs).</summary>
    public ValueTask FlushAsync(CancellationToken cancellation) => ValueTask.CompletedTask;

    /// <summary>
    /// The switchover's barrier: <see cref="MessageType.ChannelSync"/> on every connection behind
    /// its pages, so the destination knows when each has delivered all it carries before the
    /// switchover. Sent from the caller (the lanes are idle between jobs): waking N lane threads
    /// in the pause would cost a scheduler wake-up each on a busy host.
    /// </summary>
    public async Task SyncAsync(CancellationToken cancellation)
    {
        foreach (Lane lane in _lanes)
        {
            await lane.Channel.SendAsync(MessageType.ChannelSync, ReadOnlyMemory<byte>.Empty, cancellation).ConfigureAwait(false);
            _books.Counters.AddControl(FrameChannel.HeaderSize);
        }
    }

    /// <summary>
    /// The post-copy push over every lane: each takes the next pages of <paramref name="queue"/>
    /// (under its lock: the queue has one consumer at a time) and sends them on its connection;
    /// lane 0 first sends what is pending of the faults' locality windows, with
    /// <paramref name="prefetch"/> (on the main connection, prefetch class), as
    /// <see cref="BackgroundPush"/> does. Returns when the queue is empty or <paramref name="stop"/> says so.
    /// </summary>
    public async Task PushAsync(PushQueue queue, PageSender prefetch, Func<bool> stop)
    {
        _queue = queue;
        _prefetch = prefetch;
        _stop = stop;
        try
        {
            await RunAsync(Job.Push, null, PagePhase.Push, long.MaxValue, CancellationToken.None).ConfigureAwait(false);
        }
        finally
        {
            _queue = null;
            _prefetch = null;
            _stop = null;
        }
    }

    public void Dispose()
    {
        _stopping = true;
        foreach (Lane lane in _lanes)
        {
            lane.Go.Release();
        }
    }

    private async Task<(int Done, int Left)> RunAsync(Job job, PageBitmap? pages, PagePhase phase, long deadline, CancellationToken cancellation)
    {
        ObjectDisposedException.ThrowIf(_stopping, this);
        var finished = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _job = job;
        _pages = pages;
        _phase = phase;
        _deadline = deadline;
        _done = 0;
        _left = 0;
        _error = null;
        _finished = finished;
        Volatile.Write(ref _pending, _lanes.Length);
        foreach (Lane lane in _lanes)
        {
            lane.Go.Release();
        }

        await finished.Task.WaitAsync(cancellation).ConfigureAwait(false);
        if (_error is Exception e)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e).Throw();
        }

        return (_done, _left);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // a lane's whole life: compiled optimized up front, never on stack replacement mid-move
    private void RunLane(Lane lane)
    {
        while (true)
        {
            lane.Go.Wait();
            if (_stopping)
            {
                return;
            }

            try
            {
                switch (_job)
                {
                    case Job.Send:
                        Send(lane);
                        break;
                    case Job.Push:
                        Push(lane);
                        break;
                }
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref _error, e, null);
            }
            finally
            {
                if (Interlocked.Decrement(ref _pending) == 0)
                {
                    _finished!.TrySetResult();
                }
            }
        }
    }

    /// <summary>This lane's pages of the job's bitmap, ascending, until the deadline (those after it are cleared: still owed).</summary>
    private void Send(Lane lane)
    {
        PageBitmap pages = _pages!;
        PageSender sender = lane.Live;
        int lanes = _lanes.Length, done = 0, left = 0;
        long deadline = _deadline;
        sender.Begin(_phase, PageBatchWriter.NoFault, LinkClass.Bulk);
        for (int page = pages.NextSet(0); page >= 0; page = pages.NextSet(page + 1))
        {
            if (LaneOf(page, lanes) != lane.Index)
            {
                continue;
            }

            if (deadline != long.MaxValue && Stopwatch.GetTimestamp() >= deadline)
            {
                pages.Clear(page);
                left++;
                continue;
            }

            if (sender.Add(page))
            {
                sender.Flush(LinkClass.Bulk);
            }

            done++;
        }

        sender.Flush(LinkClass.Bulk);
        Interlocked.Add(ref _done, done);
        Interlocked.Add(ref _left, left);
    }

    private void Push(Lane lane)
    {
        PushQueue queue = _queue!;
        PageSender push = lane.Push;
        PageSender? prefetch = lane.Index == 0 ? _prefetch : null;
        Func<bool> stop = _stop!;
        int[] taken = lane.Taken;
        push.Begin(PagePhase.Push, PageBatchWriter.NoFault, LinkClass.Bulk);
        prefetch?.Begin(PagePhase.FaultReply, PageBatchWriter.NoFault, LinkClass.Prefetch);
        while (!stop())
        {
            if (prefetch is not null)
            {
                // Windows first, each page claimed as it goes (the fault path may have sent it).
                int n;
                do
                {
                    n = Take(queue, taken, prefetchWindows: true);
                    for (int i = 0; i < n; i++)
                    {
                        prefetch.Add(taken[i]);
                    }

                    prefetch.Flush(LinkClass.Prefetch);
                    queue.Written(taken.AsSpan(0, n));
                }
                while (n == taken.Length);
            }

            int count = Take(queue, taken, prefetchWindows: false);
            for (int i = 0; i < count; i++)
            {
                push.Add(taken[i]);
            }

            push.Flush(LinkClass.Bulk);
            queue.Written(taken.AsSpan(0, count));
            if (count < taken.Length)
            {
                break; // the queue is empty
            }
        }

        push.Flush(LinkClass.Bulk);
    }

    /// <summary>Up to a batch of claimed pages from the queue (one lane at a time: the queue's cursors have one consumer).</summary>
    private static int Take(PushQueue queue, int[] taken, bool prefetchWindows)
    {
        lock (queue)
        {
            int n = 0;
            while (n < taken.Length)
            {
                int page = prefetchWindows ? queue.NextPrefetch() : queue.Next();
                if (page < 0)
                {
                    break;
                }

                taken[n++] = page;
            }

            return n;
        }
    }

    private enum Job
    {
        Send,
        Push,
    }

    private sealed class Lane(int index, FrameChannel channel, PageSender live, PageSender push)
    {
        public int Index { get; } = index;

        public FrameChannel Channel { get; } = channel;

        /// <summary>Live and pause pages (with this lane's delta cache, if any).</summary>
        public PageSender Live { get; } = live;

        /// <summary>The post-copy push (no deltas: the VM runs at the destination).</summary>
        public PageSender Push { get; } = push;

        public SemaphoreSlim Go { get; } = new(0);

        public int[] Taken { get; } = new int[BackgroundPush.BatchPages];

        public Task Thread { get; set; } = Task.CompletedTask;
    }
}
