using System.Diagnostics;
using Ferry.Machine.Memory;
using Ferry.Migration.Protocol;
using Ferry.Migration.Transport;

namespace Ferry.Migration.Mechanisms;

/// <summary>
/// Source side of network page faults, on a thread of its own that blocks on the fault
/// connection: for each request it sends the faulted page at once, alone in its frame, as
/// urgent traffic (ahead of everything on the link), stamped with its time here. The fault
/// connection carries nothing else, so a reply never waits in a socket or at the receiver
/// behind other pages (no head-of-line blocking). The request's locality window goes to the
/// push queue, which sends it next on the main connection, ahead of the rest of the push, in
/// the prefetch class. A faulted page that is no longer pending (claimed by the push or a
/// window, and still on its way) is sent again: the destination asked because it has not got
/// it, and a duplicate costs one page on the link where waiting could cost a push batch.
/// Tells the push queue where the guest is faulting.
/// </summary>
public sealed class FaultServer
{
    private readonly FrameChannel _channel;
    private readonly PageSender _replies;
    private readonly int _pageCount;
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
    }

    public long Requests => Interlocked.Read(ref _requests);

    public long PagesServed => Interlocked.Read(ref _pagesServed);

    /// <summary>Faulted pages sent again because they were still on their way by another path.</summary>
    public long Resent => Interlocked.Read(ref _resent);

    /// <summary>Serves requests once the post-copy phase has begun; until then the destination has nothing to fault on.</summary>
    public void Start(PushQueue queue) => Volatile.Write(ref _queue, queue);

    /// <summary>
    /// Runs the request thread. The task ends when the fault connection closes (faulted with
    /// the reason); after <paramref name="cancellation"/> it ends once the connection is closed.
    /// </summary>
    public Task RunAsync(CancellationToken cancellation)
    {
        CancellationTokenRegistration stop = cancellation.Register(() => _stopped = true);
        return DedicatedThread.Start("ferry-fault-server", DedicatedThread.FaultPathNice, RequestLoop, latencySensitive: true)
            .ContinueWith(async t =>
            {
                await stop.DisposeAsync().ConfigureAwait(false);
                await t.ConfigureAwait(false);
            }, TaskScheduler.Default).Unwrap();
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
                queue.EnqueueWindow((int)request.First, (int)(request.First + request.Count), fault);
            }
        }
    }
}
