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
/// <para>The window is fixed, or adaptive as readahead is: it doubles (up to the configured
/// size) when a fault lands within one window of the previous request (the guest runs on
/// through memory, so neighbours are worth fetching) and halves (down to the page alone) when
/// it lands elsewhere (scattered faults, whose neighbours would only delay the next fault's
/// reply on the link).</para>
/// </summary>
public sealed class RemotePager : IAbsentPageHandler
{
    private readonly GuestMemory _memory;
    private readonly int _locality;
    private readonly bool _adaptive;
    private int _window;
    private int _lastFirst; // the previous request's window (meaningful once a request was sent)
    private int _lastEnd;
    private readonly PageBitmap _requested;
    private readonly Channel<PageRequest> _outbox = Channel.CreateUnbounded<PageRequest>(new UnboundedChannelOptions { SingleReader = true });
    private readonly List<double> _stallsMs = new(1 << 14);
    private long _faults;
    private long _requests;

    public RemotePager(GuestMemory memory, int localityPages, bool adaptive = false)
    {
        _memory = memory;
        _locality = Math.Max(1, localityPages);
        _adaptive = adaptive;
        _window = _locality;
        _requested = new PageBitmap(memory.PageCount);
    }

    /// <summary>Network faults: times the guest stalled on an absent page.</summary>
    public long Faults => Interlocked.Read(ref _faults);

    public long RequestsSent => Interlocked.Read(ref _requests);

    /// <summary>The window the next request would use (the configured one unless adaptive).</summary>
    public int CurrentWindow => _window;

    public void PageNeeded(int page)
    {
        Interlocked.Increment(ref _faults);
        if (_requested.Get(page))
        {
            return; // already on its way
        }

        if (_adaptive && _requests > 0)
        {
            bool runsOn = page >= _lastFirst - _window && page < _lastEnd + _window;
            _window = runsOn ? Math.Min(_locality, _window * 2) : Math.Max(1, _window / 2);
        }

        // The window [page - L/4, page + 3L/4): access mostly runs forward.
        int window = _window;
        int first = Math.Max(0, page - (window / 4));
        int end = Math.Min(_memory.PageCount, first + window);
        first = Math.Max(0, end - window);
        _lastFirst = first;
        _lastEnd = end;
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
