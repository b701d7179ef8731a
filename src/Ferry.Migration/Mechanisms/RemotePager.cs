using System.Diagnostics;
using Ferry.Machine.Memory;
using Ferry.Migration.Metrics;
using Ferry.Migration.Protocol;
using Ferry.Migration.Transport;

namespace Ferry.Migration.Mechanisms;

/// <summary>
/// Destination side of network page faults. When the hart touches an absent page it asks the
/// source for the page and its locality window (the pages around it that are still absent and
/// not yet requested), writing the request itself on the fault connection (a small frame that
/// never waits: one wake-up fewer than handing it to another thread). A fault on a page that is
/// already on its way (in an earlier window, or in the push) sends a one-page request too: the
/// source answers it at once on the fault path if the page is still pending, or sends it again
/// if it is queued behind other traffic, so no fault waits for a window or the push to drain.
/// <para>Every fault is timed along its path (see <see cref="FaultStageRecorder"/>): blocked,
/// request written, reply received (with the source's own time carried in the reply), page
/// installed, hart resumed.</para>
/// <para>The window is fixed (¼ before the fault, ¾ after), or adaptive: each side reaches as
/// far as the neighbours' measured hit rate pays for their time on the link against a fault's
/// measured stall (<see cref="PrepageWindow"/>). Either way the hit rate per distance is
/// measured (<see cref="Prepage"/>).</para>
/// </summary>
public sealed class RemotePager : IAbsentPageHandler
{
    private readonly GuestMemory _memory;
    private readonly int _locality;
    private readonly bool _adaptive;
    private int _window;
    private readonly PrepageWindow _prepage;
    private readonly Func<long> _clock;
    private readonly PageBitmap _requested;
    private readonly byte[] _requestBuffer = new byte[PageRequest.Size];
    private readonly FaultStageRecorder _stages = new();
    private FrameChannel? _channel;
    private Exception? _sendError;
    private long _faults;
    private long _requests;
    private long _bumps;
    private int _hartThread;
    private bool _mayRealtime = true;

    [ThreadStatic]
    private static int t_sleepingRealtime; // the calling thread's id while it sleeps real-time on a page, else 0

    // The fault in progress (one hart: at most one at a time). Written by the hart thread and the
    // receivers; guarded by _lock.
    private readonly object _lock = new();
    private int _awaited = -1;
    private long _blockedAt, _requestSentAt, _requestWrittenAt, _replyAt, _installedAt;
    private FaultTiming _timing;

    /// <param name="clock">Timestamps for the window's hit horizon (tests); default <see cref="Stopwatch.GetTimestamp"/>.</param>
    public RemotePager(GuestMemory memory, int localityPages, bool adaptive = false, Func<long>? clock = null)
    {
        _memory = memory;
        _clock = clock ?? Stopwatch.GetTimestamp;
        _locality = Math.Max(1, localityPages);
        _adaptive = adaptive;
        _window = _locality;
        _requested = new PageBitmap(memory.PageCount);
        _prepage = new PrepageWindow(memory.Absent, memory.Accessed, _locality);
    }

    /// <summary>Network faults: times the guest stalled on an absent page.</summary>
    public long Faults => Interlocked.Read(ref _faults);

    /// <summary>Requests for a page and its window (not counting one-page requests for pages already on their way).</summary>
    public long RequestsSent => Interlocked.Read(ref _requests);

    /// <summary>One-page requests for pages that were already on their way when the hart touched them.</summary>
    public long InFlightRequests => Interlocked.Read(ref _bumps);

    /// <summary>The window of the last request (the configured one unless adaptive).</summary>
    public int CurrentWindow => _window;

    /// <summary>The window's hit rates per distance from the fault, and (if adaptive) its choice.</summary>
    public PrepageWindow Prepage => _prepage;

    /// <summary>The page the hart waits for, or -1: receivers report its installation.</summary>
    public int AwaitedPage => Volatile.Read(ref _awaited);

    public FaultStageRecorder Stages => _stages;

    /// <summary>Where requests go: the fault connection (written from the hart's thread).</summary>
    public void Attach(FrameChannel channel)
    {
        Volatile.Write(ref _sendError, null);
        Volatile.Write(ref _channel, channel);
    }

    /// <summary>The fault connection is lost: requests are dropped (the hart waits) until <see cref="Attach"/>.</summary>
    public void Detach() => Volatile.Write(ref _channel, null);

    /// <summary>
    /// After a reconnection: whatever was requested on the lost connection may never come, so
    /// every absent page may be requested again, and the page the hart waits for (if any) is
    /// asked for now, from the caller's thread (the hart is blocked on it).
    /// </summary>
    public void Reissue()
    {
        _requested.ClearAll();
        _prepage.Forget();
        int awaited = AwaitedPage;
        FrameChannel? channel = Volatile.Read(ref _channel);
        if (awaited < 0 || channel is null)
        {
            return;
        }

        byte[] buffer = new byte[PageRequest.Size];
        new PageRequest((uint)awaited, (uint)awaited, 1).Encode(buffer);
        try
        {
            channel.Send(MessageType.PageRequest, buffer, LinkClass.Urgent);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or ProtocolException or NotSupportedException or InvalidOperationException)
        {
            Volatile.Write(ref _sendError, e);
        }
    }

    public void PageNeeded(int page, long blockedAt)
    {
        if (Interlocked.Increment(ref _faults) == 1)
        {
            // The vCPU waits on the network from now on: let it run as soon as its page is in.
            _hartThread = DedicatedThread.CurrentThreadId;
            DedicatedThread.SetSlice(_hartThread, DedicatedThread.LatencySlice);
        }

        lock (_lock)
        {
            _awaited = page;
            _blockedAt = blockedAt;
            _requestSentAt = _requestWrittenAt = _replyAt = _installedAt = 0;
            _timing = default;
        }

        PageRequest request;
        if (_requested.Get(page))
        {
            // Already on its way: ask for this page alone, ahead of whatever it is queued behind.
            Interlocked.Increment(ref _bumps);
            request = new PageRequest((uint)page, (uint)page, 1);
        }
        else
        {
            request = WindowFor(page);
            Interlocked.Increment(ref _requests);
        }

        Send(request);
    }

    private PageRequest WindowFor(int page)
    {
        long now = _clock();
        int first, end;
        if (_adaptive)
        {
            (first, end) = _prepage.Choose(page, now);
        }
        else
        {
            // The window [page - L/4, page + 3L/4): access mostly runs forward.
            first = Math.Max(0, page - (_locality / 4));
            end = Math.Min(_memory.PageCount, first + _locality);
            first = Math.Max(0, end - _locality);
        }

        _window = end - first;
        for (int p = first; p < end; p++)
        {
            if (_memory.Absent.Get(p) && _requested.Set(p) && p != page)
            {
                _prepage.Requested(p, page);
            }
        }

        _prepage.Sent(page, first, end, now);
        return new PageRequest((uint)page, (uint)first, (ushort)(end - first));
    }

    private void Send(PageRequest request)
    {
        FrameChannel? channel = _channel;
        if (channel is null || _sendError is not null)
        {
            return;
        }

        try
        {
            request.Encode(_requestBuffer);

            // Stamped as it goes to the kernel: on a loopback or a busy core the send itself may
            // run the peer's receive path, or lose the core, until after the reply is in: that
            // time belongs to the network stage, not to the request's preparation.
            long sending = Stopwatch.GetTimestamp();
            lock (_lock)
            {
                if (_awaited == (int)request.FaultPage)
                {
                    _requestSentAt = sending;
                }
            }

            channel.Send(MessageType.PageRequest, _requestBuffer, LinkClass.Urgent);
            long written = Stopwatch.GetTimestamp();
            lock (_lock)
            {
                if (_awaited == (int)request.FaultPage && _requestSentAt == sending)
                {
                    _requestWrittenAt = written;
                }
            }
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or ProtocolException or NotSupportedException or InvalidOperationException)
        {
            // Never into the hart: it keeps waiting, and the migration fails on the broken connection.
            Volatile.Write(ref _sendError, e);
        }
    }

    /// <summary>A fault reply for <paramref name="faultPage"/> was received at <paramref name="at"/>, with the source's timing.</summary>
    public void ReplyReceived(int faultPage, long at, FaultTiming timing)
    {
        lock (_lock)
        {
            if (_awaited == faultPage && _replyAt == 0)
            {
                _replyAt = at;
                _timing = timing;
            }
        }
    }

    /// <summary>The awaited page was installed at <paramref name="at"/> (by whichever receiver brought it).</summary>
    public void PageInstalled(int page, long at)
    {
        lock (_lock)
        {
            if (_awaited == page && _installedAt == 0)
            {
                _installedAt = at;
            }
        }
    }

    public void StallEnded(int page, long blockedAt, long resumedAt)
    {
        _prepage.NoteStall(resumedAt - blockedAt);
        lock (_lock)
        {
            if (_awaited == page && _blockedAt == blockedAt)
            {
                if (_replyAt != 0)
                {
                    _prepage.NoteLinkTime(_timing.LinkNs * Stopwatch.Frequency / 1_000_000_000L);
                }

                _stages.Record(blockedAt, _requestSentAt, _requestWrittenAt, _replyAt, _timing, _installedAt, resumedAt);
                _awaited = -1;
            }
            else
            {
                _stages.Record(blockedAt, 0, 0, 0, default, 0, resumedAt);
            }
        }
    }

    public double[] Stalls() => _stages.Totals();

    /// <summary>
    /// The vCPU sleeps on its page (its spin is over and the page is still absent): while it
    /// sleeps it is a real-time thread where the fault path may be
    /// (<see cref="DedicatedThread.RealtimeFaultPath"/>), so that the receiver's wake-up runs it
    /// at once instead of queueing it behind ordinary threads on a busy core. It is an ordinary
    /// thread again the moment it runs (<see cref="WaitEnded"/>).
    /// </summary>
    public void Sleeping()
    {
        if (!_mayRealtime)
        {
            return;
        }

        // The calling thread: the vCPU's, or a device's that waits for a page its DMA touches.
        int tid = DedicatedThread.CurrentThreadId;
        bool realtime = DedicatedThread.RealtimeFaultPath && DedicatedThread.SetRealtime(tid);
        _mayRealtime = realtime; // refused once (no privilege, or turned off): never asked again
        t_sleepingRealtime = realtime ? tid : 0;
    }

    public void WaitEnded()
    {
        int tid = t_sleepingRealtime;
        if (tid != 0)
        {
            t_sleepingRealtime = 0;
            // The vCPU keeps the short slice of the post-copy phase; any other thread its default.
            DedicatedThread.SetSlice(tid, tid == _hartThread ? DedicatedThread.LatencySlice : TimeSpan.Zero);
        }
    }

    /// <summary>All pages are in: the vCPU goes back to the scheduler's default slice.</summary>
    public void Finished()
    {
        if (_hartThread != 0)
        {
            DedicatedThread.SetSlice(_hartThread, TimeSpan.Zero);
        }
    }
}
