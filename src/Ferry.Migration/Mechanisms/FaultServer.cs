using System.Diagnostics;
using System.Runtime.CompilerServices;
using Ferry.Machine.Memory;
using Ferry.Migration.Protocol;
using Ferry.Migration.Transport;

namespace Ferry.Migration.Mechanisms;

/// <summary>
/// Source side of network page faults, on a thread of its own that blocks on the fault
/// connection: for each request it sends the faulted page at once, alone in its frame, as
/// urgent traffic (ahead of everything on the link), stamped with its time here. Then the
/// request's locality window follows on the same connection, right behind its page (a guest
/// that runs on through memory needs it next), in small frames of the prefetch class that
/// name no fault, but only while no other request is waiting and the link would take its next
/// frame at once: the moment one arrives, or the windows already booked would make this
/// thread wait for the link, the window stops, its rest goes to the push queue (sent next on the main connection, ahead of
/// the rest of the push), and the new fault is served; so a reply waits behind at most one
/// small window frame. A faulted page the push has held unwritten for 0.5 ms or more (it lost
/// its core: it runs below the fault path) is taken from it and sent as the reply
/// (<see cref="PushQueue.TryRescue"/>); the push's copy arrives second and is dropped. A
/// faulted page that is on its way (written by the push or a window, or in a batch the push is
/// filling) is not sent again: every page crosses the link once but for those rescues. Sending it again would
/// win little (the push books one small batch at a time) and costs much where it matters: a
/// guest running through memory behind the push would fetch every page of the push's next
/// batch by fault, each reply pushing that batch back on the link. Tells the push queue where
/// the guest is faulting.
/// </summary>
public sealed class FaultServer
{
    /// <summary>Pages per window frame: small, so that a fault reply waits behind at most one of them.</summary>
    public const int PrefetchFramePages = 4;

    private readonly FrameChannel _channel;
    private readonly PageSender _replies;
    private readonly PageSender _prefetch;
    private readonly int _pageCount;
    private PushQueue? _queue;
    private volatile bool _stopped;
    private long _requests;
    private long _pagesServed;
    private long _onItsWay;
    private long _rescued;

    public FaultServer(FrameChannel channel, GuestMemory memory, SourceBooks books, bool compress)
    {
        _channel = channel;
        _pageCount = memory.PageCount;
        _replies = new PageSender(channel, memory, books, 1, compress);
        _prefetch = new PageSender(channel, memory, books, PrefetchFramePages, compress);
    }

    public long Requests => Interlocked.Read(ref _requests);

    public long PagesServed => Interlocked.Read(ref _pagesServed);

    /// <summary>Requests for pages the push or a window had already claimed (left to arrive by that path).</summary>
    public long AlreadyOnItsWay => Interlocked.Read(ref _onItsWay);

    /// <summary>Faulted pages the push had claimed and not yet written, sent as the reply (the push's copy is dropped at the destination).</summary>
    public long RescuedFromPush => Interlocked.Read(ref _rescued);

    /// <summary>How the request thread is scheduled (<see cref="DedicatedThread.Prioritize"/>), once it runs.</summary>
    public FaultPathScheduling Scheduling { get; private set; }

    /// <summary>Serves requests once the post-copy phase has begun; until then the destination has nothing to fault on.</summary>
    public void Start(PushQueue queue) => Volatile.Write(ref _queue, queue);

    /// <summary>
    /// Runs the request thread. The task ends when the fault connection closes (faulted with
    /// the reason); after <paramref name="cancellation"/> it ends once the connection is closed.
    /// </summary>
    public Task RunAsync(CancellationToken cancellation)
    {
        CancellationTokenRegistration stop = cancellation.Register(() => _stopped = true);
        return DedicatedThread.Start("ferry-fault-server", DedicatedThread.FaultPathNice, RequestLoop)
            .ContinueWith(async t =>
            {
                await stop.DisposeAsync().ConfigureAwait(false);
                await t.ConfigureAwait(false);
            }, TaskScheduler.Default).Unwrap();
    }

    private void Reply(int fault, long arrived)
    {
        _replies.Begin(PagePhase.FaultReply, (uint)fault, LinkClass.Urgent);
        _replies.Add(fault);
        _replies.FlushFaultReply(arrived);
        Interlocked.Increment(ref _pagesServed);
    }

    /// <summary>Sends what is pending of a window until another request arrives; the push takes the rest.</summary>
    private void SendWindow(PushQueue queue, int first, int end, int fault)
    {
        _prefetch.Begin(PagePhase.FaultReply, PageBatchWriter.NoFault, LinkClass.Prefetch);
        int served = 0;
        for (int page = first; page < end; page++)
        {
            // Another request waits, or the window's next frame would wait for the link: the
            // push takes the rest (it may wait; this thread must not, requests come first).
            if (_channel.DataAvailable || (_prefetch.Count == 0 && _channel.PrefetchWouldWait))
            {
                queue.EnqueueWindow(page, end, fault);
                break;
            }

            if (page != fault && queue.TryClaim(page))
            {
                served++;
                if (_prefetch.Add(page))
                {
                    _prefetch.Flush(LinkClass.Prefetch);
                }
            }
        }

        _prefetch.Flush(LinkClass.Prefetch);
        Interlocked.Add(ref _pagesServed, served);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // the fault path's whole life: compiled optimized up front, never on stack replacement mid-move
    private void RequestLoop()
    {
        Scheduling = DedicatedThread.Prioritize(DedicatedThread.CurrentThreadId);
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
            if (queue.TryClaim(fault))
            {
                Reply(fault, arrived);
            }
            else if (queue.TryRescue(fault))
            {
                // Held by the push, not yet written: the reply goes first, on the fault path.
                Interlocked.Increment(ref _rescued);
                Reply(fault, arrived);
            }
            else
            {
                // Written by the push or a window: it arrives by that path.
                Interlocked.Increment(ref _onItsWay);
            }

            if (request.Count > 1)
            {
                SendWindow(queue, (int)request.First, (int)(request.First + request.Count), fault);
            }
        }
    }
}
