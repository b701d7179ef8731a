using System.Threading.Channels;
using Ferry.Machine.Memory;
using Ferry.Migration.Protocol;
using Ferry.Migration.Transport;

namespace Ferry.Migration.Mechanisms;

/// <summary>
/// Destination side of network page faults. When the hart touches an absent page it asks the
/// source for the page and its locality window (the pages around it that are still absent and
/// not yet requested), without blocking the hart thread beyond queueing the request; a sender
/// task writes requests to the fault connection. Tracks requested pages so none is asked
/// twice, and records every stall the guest suffered.
/// </summary>
public sealed class RemotePager : IAbsentPageHandler
{
    private readonly GuestMemory _memory;
    private readonly int _locality;
    private readonly PageBitmap _requested;
    private readonly Channel<PageRequest> _outbox = Channel.CreateUnbounded<PageRequest>(new UnboundedChannelOptions { SingleReader = true });
    private readonly List<double> _stallsMs = new(1 << 14);
    private long _faults;
    private long _requests;

    public RemotePager(GuestMemory memory, int localityPages)
    {
        _memory = memory;
        _locality = Math.Max(1, localityPages);
        _requested = new PageBitmap(memory.PageCount);
    }

    /// <summary>Network faults: times the guest stalled on an absent page.</summary>
    public long Faults => Interlocked.Read(ref _faults);

    public long RequestsSent => Interlocked.Read(ref _requests);

    public void PageNeeded(int page)
    {
        Interlocked.Increment(ref _faults);
        if (_requested.Get(page))
        {
            return; // already on its way
        }

        // The window [page - L/4, page + 3L/4): access mostly runs forward.
        int first = Math.Max(0, page - (_locality / 4));
        int end = Math.Min(_memory.PageCount, first + _locality);
        first = Math.Max(0, end - _locality);
        for (int p = first; p < end; p++)
        {
            if (_memory.Absent.Get(p))
            {
                _requested.Set(p);
            }
        }

        Interlocked.Increment(ref _requests);
        _outbox.Writer.TryWrite(new PageRequest((uint)page, (uint)first, (ushort)(end - first)));
    }

    public void StallEnded(int page, TimeSpan stall)
    {
        lock (_stallsMs)
        {
            _stallsMs.Add(stall.TotalMilliseconds);
        }
    }

    public double[] Stalls()
    {
        lock (_stallsMs)
        {
            return [.. _stallsMs];
        }
    }

    /// <summary>Writes queued requests to the fault connection until completed or cancelled.</summary>
    public async Task RunSenderAsync(FrameChannel channel, CancellationToken cancellation)
    {
        var buffer = new byte[PageRequest.Size];
        try
        {
            await foreach (PageRequest request in _outbox.Reader.ReadAllAsync(cancellation).ConfigureAwait(false))
            {
                request.Encode(buffer);
                await channel.SendAsync(MessageType.PageRequest, buffer, cancellation).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    public void Complete() => _outbox.Writer.TryComplete();
}
