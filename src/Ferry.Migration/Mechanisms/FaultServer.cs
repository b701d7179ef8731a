using System.Diagnostics;
using Ferry.Machine.Memory;
using Ferry.Migration.Protocol;
using Ferry.Migration.Transport;

namespace Ferry.Migration.Mechanisms;

/// <summary>
/// Source side of network page faults, on two threads of its own so that no fault reply waits
/// for the thread pool, the push, or another fault's window:
/// <list type="bullet">
/// <item>the request thread blocks on the fault connection; for each request it sends the
/// faulted page at once, alone in its frame, as urgent traffic (ahead of everything on the
/// link), stamped with its time here. A page that is no longer pending (claimed by the push or
/// a window, and still on its way) is sent again: the destination asked because it has not got
/// it, and a duplicate costs one page on the link where waiting could cost a whole push batch;</item>
/// <item>the prefetch thread sends each request's locality window in small frames of the
/// <see cref="LinkClass.Prefetch"/> class (behind any fault reply, ahead of the push), newest
/// window first, claiming each page when it sends it, so a later fault never waits behind an
/// earlier fault's neighbours.</item>
/// </list>
/// Tells the push queue where the guest is faulting.
/// </summary>
public sealed class FaultServer
{
    /// <summary>Pages per prefetch frame: small, so that a fault reply waits for at most one of them in the kernel.</summary>
    public const int PrefetchFramePages = 4;

    /// <summary>Windows kept for the prefetch thread; older ones are left to the push.</summary>
    private const int MaxQueuedWindows = 64;

    private readonly FrameChannel _channel;
    private readonly PageSender _replies;
    private readonly PageSender _prefetch;
    private readonly int _pageCount;
    private readonly LinkedList<Window> _windows = new();
    private readonly SemaphoreSlim _windowSignal = new(0);
    private PushQueue? _queue;
    private volatile bool _stopped;
    private long _requests;
    private long _pagesServed;
    private long _resent;

    public FaultServer(FrameChannel channel, GuestMemory memory, SourceBooks books, bool compress)
    {
        _channel = channel;
        _pageCount = memory.PageCount;
        _replies = new PageSender(channel, memory, books, 1, compress);
        _prefetch = new PageSender(channel, memory, books, PrefetchFramePages, compress);
    }

    public long Requests => Interlocked.Read(ref _requests);

    public long PagesServed => Interlocked.Read(ref _pagesServed);

    /// <summary>Faulted pages sent again because they were still on their way by another path.</summary>
    public long Resent => Interlocked.Read(ref _resent);

    /// <summary>Serves requests once the post-copy phase has begun; until then the destination has nothing to fault on.</summary>
    public void Start(PushQueue queue) => Volatile.Write(ref _queue, queue);

    /// <summary>
    /// Runs the request and prefetch threads. The task ends when the fault connection closes
    /// (faulted with the reason) or, after <paramref name="cancellation"/>, when it is closed.
    /// </summary>
    public Task RunAsync(CancellationToken cancellation)
    {
        Task prefetch = DedicatedThread.Start("ferry-prefetch", DedicatedThread.FaultPathNice, PrefetchLoop);
        Task requests = DedicatedThread.Start("ferry-fault-server", DedicatedThread.FaultPathNice, RequestLoop, latencySensitive: true);
        CancellationTokenRegistration stop = cancellation.Register(Stop);
        return requests.ContinueWith(async t =>
        {
            Stop();
            await stop.DisposeAsync().ConfigureAwait(false);
            await prefetch.ConfigureAwait(false);
            await t.ConfigureAwait(false);
        }, TaskScheduler.Default).Unwrap();
    }

    private void Stop()
    {
        _stopped = true;
        _windowSignal.Release();
    }

    private void RequestLoop()
    {
        while (!_stopped)
        {
            (MessageType type, ReadOnlyMemory<byte> payload) = _channel.Receive();
            long arrived = Stopwatch.GetTimestamp();
            if (type != MessageType.PageRequest)
            {
                throw FrameChannel.Unexpected(type, payload, nameof(MessageType.PageRequest));
            }

            PageRequest request = PageRequest.Decode(payload.Span, _pageCount);
            PushQueue queue = Volatile.Read(ref _queue) ?? throw new ProtocolException("page request before the destination resumed");
            Interlocked.Increment(ref _requests);
            int fault = (int)request.FaultPage;
            queue.NoteFault(fault);
            if (!queue.TryClaim(fault))
            {
                Interlocked.Increment(ref _resent);
            }

            _replies.Begin(PagePhase.FaultReply, request.FaultPage, LinkClass.Urgent);
            _replies.Add(fault);
            _replies.FlushFaultReply(arrived);
            Interlocked.Increment(ref _pagesServed);

            if (request.Count > 1)
            {
                lock (_windows)
                {
                    _windows.AddFirst(new Window(request.First, request.First + request.Count, request.FaultPage));
                    if (_windows.Count > MaxQueuedWindows)
                    {
                        _windows.RemoveLast();
                    }
                }

                _windowSignal.Release();
            }
        }
    }

    private void PrefetchLoop()
    {
        while (true)
        {
            _windowSignal.Wait();
            if (_stopped)
            {
                return;
            }

            PushQueue queue = Volatile.Read(ref _queue)!;
            while (!_stopped && TryTakeNewestWindow(out Window window))
            {
                _prefetch.Begin(PagePhase.FaultReply, PageBatchWriter.NoFault, LinkClass.Prefetch);
                int served = 0;
                uint end = window.End;
                for (uint page = window.First; page < end; page++)
                {
                    if (page != window.Skip && queue.TryClaim((int)page))
                    {
                        served++;
                        if (_prefetch.Add((int)page))
                        {
                            _prefetch.Flush(LinkClass.Prefetch);
                            if (NewerWindowWaiting())
                            {
                                // Put the rest of this window back behind the newer one.
                                Requeue(window with { First = page + 1 });
                                break;
                            }
                        }
                    }
                }

                _prefetch.Flush(LinkClass.Prefetch);
                Interlocked.Add(ref _pagesServed, served);
            }
        }
    }

    private bool TryTakeNewestWindow(out Window window)
    {
        lock (_windows)
        {
            if (_windows.First is { } first)
            {
                window = first.Value;
                _windows.RemoveFirst();
                return true;
            }
        }

        window = default;
        return false;
    }

    private bool NewerWindowWaiting()
    {
        lock (_windows)
        {
            return _windows.Count > 0;
        }
    }

    private void Requeue(Window rest)
    {
        if (rest.First >= rest.End)
        {
            return;
        }

        lock (_windows)
        {
            // Behind the newer windows, ahead of the older ones.
            _windows.AddAfter(_windows.First!, rest);
        }
    }

    /// <summary>A locality window still to send: pages [First, End) except the faulted page (sent already).</summary>
    private readonly record struct Window(uint First, uint End, uint Skip);
}
