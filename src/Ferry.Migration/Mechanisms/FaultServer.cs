using Ferry.Machine.Memory;
using Ferry.Migration.Protocol;
using Ferry.Migration.Transport;

namespace Ferry.Migration.Mechanisms;

/// <summary>
/// Source side of network page faults: answers the destination's page requests on the fault
/// connection, which is charged to the link ahead of the background push (urgent), so a fault
/// never waits behind the bulk queue. Sends only pages still pending (each page crosses once)
/// and tells the push queue where the guest is faulting.
/// </summary>
public sealed class FaultServer
{
    private readonly FrameChannel _channel;
    private readonly PageSender _sender;
    private readonly int _pageCount;
    private PushQueue? _queue;
    private long _requests;
    private long _pagesServed;

    public FaultServer(FrameChannel channel, GuestMemory memory, SourceBooks books, int batchPages, bool compress)
    {
        _channel = channel;
        _pageCount = memory.PageCount;
        _sender = new PageSender(channel, memory, books, Math.Max(batchPages, 1024), compress);
    }

    public long Requests => Interlocked.Read(ref _requests);

    public long PagesServed => Interlocked.Read(ref _pagesServed);

    /// <summary>Serves requests once the post-copy phase has begun; until then the destination has nothing to fault on.</summary>
    public void Start(PushQueue queue) => Volatile.Write(ref _queue, queue);

    /// <summary>Reads and answers requests until the connection closes or <paramref name="cancellation"/> fires.</summary>
    public async Task RunAsync(CancellationToken cancellation)
    {
        while (!cancellation.IsCancellationRequested)
        {
            (MessageType type, ReadOnlyMemory<byte> payload) = await _channel.ReceiveAsync(cancellation).ConfigureAwait(false);
            if (type != MessageType.PageRequest)
            {
                throw FrameChannel.Unexpected(type, payload, nameof(MessageType.PageRequest));
            }

            PageRequest request = PageRequest.Decode(payload.Span, _pageCount);
            PushQueue queue = Volatile.Read(ref _queue) ?? throw new ProtocolException("page request before the destination resumed");
            Interlocked.Increment(ref _requests);
            queue.NoteFault((int)request.FaultPage);

            await _sender.BeginAsync(PagePhase.FaultReply, request.FaultPage, cancellation).ConfigureAwait(false);
            int served = 0;

            // The faulted page goes alone in its own frame, so the stalled hart waits for one
            // page, not for its whole locality window; the window follows in a second frame.
            if (queue.TryClaim((int)request.FaultPage))
            {
                await _sender.SendAsync((int)request.FaultPage, cancellation).ConfigureAwait(false);
                await _sender.FlushAsync(cancellation).ConfigureAwait(false);
                served++;
            }

            for (uint page = request.First; page < request.First + request.Count; page++)
            {
                if (page != request.FaultPage && queue.TryClaim((int)page))
                {
                    await _sender.SendAsync((int)page, cancellation).ConfigureAwait(false);
                    served++;
                }
            }

            await _sender.FlushAsync(cancellation).ConfigureAwait(false);
            Interlocked.Add(ref _pagesServed, served);
        }
    }
}
