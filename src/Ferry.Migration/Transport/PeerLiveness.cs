namespace Ferry.Migration.Transport;

/// <summary>
/// Heartbeats and a deadline over the connections of one migration, at one end. A peer that
/// stops talking (a SIGSTOP'd agent, a hung host, a link that died without a reset) is declared
/// dead once no byte has arrived on one of its connections for <see cref="Deadline"/>: every
/// connection is then aborted, so whatever blocks on them (a receive, a send into a full
/// window, a thread blocked in the kernel) fails at once with a <see cref="PeerTimeoutException"/>.
/// <para>Any byte counts as a sign of life, so heartbeats go only on a connection that has sent
/// nothing for a heartbeat interval (a fifth of the deadline). They are sent from this monitor's
/// own threads, never from a hot path: the fault path pays one timestamp per read and per frame,
/// no allocation and no wake-up (an idle fault connection sees one heartbeat per interval).</para>
/// <para>The watch runs on two threads of its own, not on the thread pool: a host whose pool is
/// starved (a busy machine, many migrations at once) must neither miss its own heartbeats, and
/// be declared dead by a healthy peer, nor notice a dead peer late. Nor may it declare a live
/// peer dead because its own reader is late: bytes that arrived and wait unread count as a sign
/// of life (<see cref="FrameChannel.NoteWaitingBytes"/>). (Measured: in a test process whose
/// runner holds two of a 2-core machine's pool threads, the async receive that consumes the
/// heartbeats waited up to 600 ms for a pool thread while they sat in the connection.) One thread checks the
/// silences and never blocks; the other sends the heartbeats, since a send into a stalled peer's
/// full window blocks until the check aborts the connection.</para>
/// </summary>
public sealed class PeerLiveness : IDisposable
{
    private readonly List<FrameChannel> _channels = [];
    private readonly string _peer;
    private readonly CancellationTokenSource _stop = new();
    private readonly TaskCompletionSource<string> _dead = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Thread _checker;
    private readonly Thread _beater;
    private readonly AutoResetEvent _beat = new(false);
    private FrameChannel[] _beatChannels = [];

    /// <param name="peer">"source" or "destination": named in the reason.</param>
    public PeerLiveness(TimeSpan deadline, string peer)
    {
        Deadline = deadline;
        Interval = TimeSpan.FromTicks(Math.Max(TimeSpan.FromMilliseconds(20).Ticks, deadline.Ticks / 5));
        _peer = peer;
        _checker = new Thread(Check) { IsBackground = true, Name = $"ferry-liveness-{peer}" };
        _beater = new Thread(Beat) { IsBackground = true, Name = $"ferry-heartbeat-{peer}" };
        _checker.Start();
        _beater.Start();
    }

    public TimeSpan Deadline { get; }

    /// <summary>Heartbeat interval: a fifth of the deadline, so four may be lost or late before the peer is declared dead.</summary>
    public TimeSpan Interval { get; }

    /// <summary>Completes with the reason once the peer was declared dead.</summary>
    public Task<string> Dead => _dead.Task;

    /// <summary>Silence (ms) when the peer was declared dead; 0 before.</summary>
    public double DetectedAfterMs { get; private set; }

    /// <summary>The longest silence now on a watched connection.</summary>
    public TimeSpan Silence
    {
        get
        {
            TimeSpan longest = TimeSpan.Zero;
            lock (_channels)
            {
                foreach (FrameChannel c in _channels)
                {
                    TimeSpan s = c.SilentFor;
                    longest = s > longest ? s : longest;
                }
            }

            return longest;
        }
    }

    /// <summary>True while the peer has said nothing for more than two heartbeat intervals (a stall, not yet a death).</summary>
    public bool Stalled => Silence > Interval * 2 && !_dead.Task.IsCompleted;

    /// <summary>Watches one more connection (from now: its silence counts from its last received byte).</summary>
    public void Watch(FrameChannel channel)
    {
        lock (_channels)
        {
            _channels.Add(channel);
        }
    }

    private void Check()
    {
        // Checked every half interval, and declared dead one check early, so that the silence
        // at detection is at most the deadline (plus the thread's own lateness).
        TimeSpan tick = TimeSpan.FromTicks(Math.Max(TimeSpan.FromMilliseconds(10).Ticks, Interval.Ticks / 2));
        WaitHandle stop = _stop.Token.WaitHandle;
        while (!stop.WaitOne(tick))
        {
            FrameChannel[] channels;
            lock (_channels)
            {
                channels = [.. _channels];
            }

            foreach (FrameChannel c in channels)
            {
                c.NoteWaitingBytes();
                TimeSpan silent = c.SilentFor;
                if (silent >= Deadline - tick)
                {
                    Declare(channels, silent);
                    return;
                }
            }

            bool due = false;
            foreach (FrameChannel c in channels)
            {
                due |= c.IdleFor >= Interval;
            }

            if (due)
            {
                Volatile.Write(ref _beatChannels, channels);
                _beat.Set(); // (a beat still blocked in a send is not queued twice: the event holds one)
            }
        }
    }

    private void Beat()
    {
        WaitHandle[] handles = [_beat, _stop.Token.WaitHandle];
        while (WaitHandle.WaitAny(handles) == 0)
        {
            foreach (FrameChannel c in Volatile.Read(ref _beatChannels))
            {
                if (c.IdleFor >= Interval)
                {
                    c.TrySendHeartbeat();
                }
            }
        }

        // Stopped: the last thread out frees the handles.
        _checker.Join();
        _beat.Dispose();
        _stop.Dispose();
    }

    private int _disposed;

    private void Declare(FrameChannel[] channels, TimeSpan silent)
    {
        DetectedAfterMs = silent.TotalMilliseconds;
        string reason = $"the {_peer} was silent for {silent.TotalSeconds:0.0} s (deadline {Deadline.TotalSeconds:0.0} s): stalled or unreachable";
        foreach (FrameChannel c in channels)
        {
            c.Abort(reason);
        }

        _dead.TrySetResult(reason);
    }

    /// <summary>Stops watching (the connections are left as they are). Idempotent: a migration's recovery and its close may both stop the same watch.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _stop.Cancel(); // both threads end (a beat blocked in a send ends when its connection is aborted or closed)
    }
}
