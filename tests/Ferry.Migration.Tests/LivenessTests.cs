using System.Buffers.Binary;
using System.Diagnostics;
using Ferry.Machine.Board;
using Ferry.Migration.Protocol;
using Ferry.Migration.Transport;
using Xunit;

namespace Ferry.Migration.Tests;

/// <summary>Heartbeats, the peer deadline, and the recovery messages on the wire.</summary>
public class LivenessTests
{
    private static CancellationToken Timeout => new CancellationTokenSource(TimeSpan.FromSeconds(20)).Token;

    private static Hello SampleHello() => new()
    {
        Role = ConnectionRole.Fault,
        Token = new byte[Hello.TokenLength],
        VmName = "vm",
        Machine = new MachineConfig { MemorySize = 16UL << 20 },
        Strategy = StrategyKind.PostCopy,
    };

    [Fact]
    public void Hello_carries_the_peer_timeout_and_the_resume_flag()
    {
        Hello d = Hello.Decode((SampleHello() with { PeerTimeoutMs = 1234, Resume = true }).Encode());
        Assert.Equal(1234U, d.PeerTimeoutMs);
        Assert.True(d.Resume);
        Assert.False(Hello.Decode(SampleHello().Encode()).Resume);
        Assert.Equal(Hello.DefaultPeerTimeoutMs, Hello.Decode(SampleHello().Encode()).PeerTimeoutMs);
    }

    [Theory]
    [InlineData(0U)]
    [InlineData(Hello.MinPeerTimeoutMs - 1)]
    [InlineData(Hello.MaxPeerTimeoutMs + 1)]
    [InlineData(uint.MaxValue)]
    public void Hello_with_a_peer_timeout_out_of_range_is_rejected(uint ms)
    {
        ProtocolException e = Assert.Throws<ProtocolException>(() => Hello.Decode((SampleHello() with { PeerTimeoutMs = ms }).Encode()));
        Assert.Contains($"peer timeout {ms} ms", e.Message);
    }

    [Fact]
    public void Hello_with_a_bad_resume_flag_is_rejected()
    {
        byte[] b = SampleHello().Encode();
        b[^3] = 2; // the resume flag, then the channel count and index
        Assert.Contains("bad resume flag 2", Assert.Throws<ProtocolException>(() => Hello.Decode(b)).Message);
    }

    [Fact]
    public void ResumeState_round_trips_and_is_checked_against_the_receivers_memory()
    {
        const int pages = 100;
        ulong[] map = [0xF0F0_0000_0000_0001, 0xF_FFFF_FFFF];
        ResumeState d = ResumeState.Decode(new ResumeState(ResumeStatus.RunningHere, map).Encode(), pages);
        Assert.Equal(ResumeStatus.RunningHere, d.Status);
        Assert.Equal(map, d.AbsentPages);
        Assert.Null(ResumeState.Decode(new ResumeState(ResumeStatus.NotResumed, null).Encode(), pages).AbsentPages);
        ResumeState completed = ResumeState.Decode(new ResumeState(ResumeStatus.Completed, null).Encode(), pages);
        Assert.Equal(ResumeStatus.Completed, completed.Status);
        Assert.Null(completed.AbsentPages);
        Assert.Contains("expected 0", Assert.Throws<ProtocolException>(() => ResumeState.Decode(new ResumeState(ResumeStatus.Completed, map).Encode(), pages)).Message);

        Assert.Contains("resume map has 2 words, expected 1", Assert.Throws<ProtocolException>(() => ResumeState.Decode(new ResumeState(ResumeStatus.RunningHere, map).Encode(), 64)).Message);
        Assert.Contains("beyond the end of RAM", Assert.Throws<ProtocolException>(() => ResumeState.Decode(new ResumeState(ResumeStatus.RunningHere, [0, 1UL << 36]).Encode(), pages)).Message);
        Assert.Contains("expected 0", Assert.Throws<ProtocolException>(() => ResumeState.Decode(new ResumeState(ResumeStatus.NotResumed, map).Encode(), pages)).Message);
        byte[] bad = new ResumeState(ResumeStatus.NotResumed, null).Encode();
        bad[0] = 9;
        Assert.Contains("unknown resume status 9", Assert.Throws<ProtocolException>(() => ResumeState.Decode(bad, pages)).Message);
    }

    [Fact]
    public async Task A_heartbeat_is_skipped_by_the_receiver_without_an_allocation_and_a_heartbeat_with_a_payload_is_refused()
    {
        // What a sender writes: heartbeats (TrySendHeartbeat), a frame, a heartbeat, a frame.
        var wire = new MemoryStream();
        await using (var tx = new FrameChannel(wire))
        {
            for (int i = 0; i < 3; i++)
            {
                Assert.True(tx.TrySendHeartbeat());
            }

            await tx.SendAsync(MessageType.Complete, new Complete(1, 2).Encode(), Timeout);
            Assert.True(tx.TrySendHeartbeat());
            await tx.SendAsync(MessageType.Complete, new Complete(3, 4).Encode(), Timeout);
            Assert.Equal((4 * FrameChannel.HeaderSize) + (2 * (FrameChannel.HeaderSize + 12)), tx.BytesSent);
        }

        // A blocking receiver over a stream that allocates nothing (as the fault path's socket in kernel blocking mode).
        await using var rx = new FrameChannel(new MemoryStream(wire.ToArray()));
        (MessageType first, _) = rx.Receive();
        Assert.Equal(MessageType.Complete, first);
        long before = GC.GetAllocatedBytesForCurrentThread();
        (MessageType type, ReadOnlyMemory<byte> payload) = rx.Receive();
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(MessageType.Complete, type);
        Assert.Equal(0, allocated);
        Assert.Equal(new Complete(3, 4), Complete.Decode(payload.Span));

        byte[] header = new byte[9];
        header[0] = (byte)MessageType.Heartbeat;
        BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(4), 1);
        await using var bad = new FrameChannel(new MemoryStream(header));
        Assert.Contains("heartbeat with a 1-byte payload", Assert.Throws<ProtocolException>(() => bad.Receive()).Message);
    }

    [Fact]
    public async Task Heartbeats_keep_an_idle_connection_alive_past_the_deadline()
    {
        (Stream a, Stream b) = InMemoryTransport.CreatePair();
        await using var left = new FrameChannel(a);
        await using var right = new FrameChannel(b);
        var deadline = TimeSpan.FromSeconds(2); // a loaded CI machine may delay a thread by hundreds of ms
        using var leftWatch = new PeerLiveness(deadline, "right");
        using var rightWatch = new PeerLiveness(deadline, "left");
        leftWatch.Watch(left);
        rightWatch.Watch(right);

        // Both ends drain their connection (as the migration's receivers do); nobody sends anything else.
        Task drainLeft = DedicatedThread.Start("drain-left", 0, () => Drain(left));
        Task drainRight = DedicatedThread.Start("drain-right", 0, () => Drain(right));
        await Task.Delay(deadline * 3);
        Assert.False(leftWatch.Dead.IsCompleted, "idle but alive: not dead");
        Assert.False(rightWatch.Dead.IsCompleted);
        Assert.True(left.BytesSent >= 4 * FrameChannel.HeaderSize, "heartbeats went out");
        left.Abort("test over");
        right.Abort("test over");
        await Task.WhenAll(drainLeft, drainRight).WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task A_silent_peer_is_declared_dead_within_the_deadline_and_a_blocked_receive_fails_with_the_reason()
    {
        (Stream a, Stream b) = InMemoryTransport.CreatePair();
        await using var channel = new FrameChannel(a);
        var deadline = TimeSpan.FromMilliseconds(500);
        using var watch = new PeerLiveness(deadline, "destination");
        watch.Watch(channel);
        var silent = Stopwatch.StartNew();

        // The peer (b) never writes: a receive blocks until the deadline aborts the connection.
        PeerTimeoutException e = await Assert.ThrowsAsync<PeerTimeoutException>(async () => await channel.ReceiveAsync(Timeout));
        TimeSpan detected = silent.Elapsed;
        Assert.Contains("the destination was silent for", e.Message);
        Assert.Equal(e.Message, await watch.Dead);
        // Never early; late only by the timer's own lateness (a loaded test machine's timers can be
        // a second late: the bound catches a monitor that does not run, not scheduling noise).
        Assert.InRange(watch.DetectedAfterMs, deadline.TotalMilliseconds * 0.8, deadline.TotalMilliseconds * 3);
        Assert.InRange(detected, deadline * 0.8, deadline * 3);
        Assert.True(LinkFailure.Is(e));
        b.Dispose();
    }

    /// <summary>
    /// A reader that is late (its continuation waits for a starved thread pool: measured up to
    /// 600 ms in a test process whose runner holds two of the machine's two pool threads) must
    /// not make a live peer look dead: heartbeats that arrived and wait unread count. Here the
    /// watching end never reads at all, over a real loopback connection and the in-memory pair.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Heartbeats_waiting_unread_keep_the_peer_alive_but_stale_bytes_do_not(bool tcp)
    {
        (Stream a, Stream b, IDisposable? listener) = tcp ? LoopbackPair() : InMemoryPair();
        using (listener)
        {
            await using var left = new FrameChannel(a);
            await using var right = new FrameChannel(b);
            var deadline = TimeSpan.FromMilliseconds(600);
            using var leftWatch = new PeerLiveness(deadline, "right");
            var rightWatch = new PeerLiveness(deadline, "left");
            leftWatch.Watch(left);
            rightWatch.Watch(right);
            Task drainRight = DedicatedThread.Start("drain-right", 0, () => Drain(right));

            // The left end never reads; the right end's heartbeats pile up in its receive queue.
            await Task.Delay(deadline * 3);
            Assert.False(leftWatch.Dead.IsCompleted, "heartbeats that waited unread did not count: a live peer was declared dead");
            Assert.True(left.DataAvailable, "the heartbeats wait unread");

            // The right end falls silent (its watch, which sends its heartbeats, stops): what waits
            // unread is stale now and must not keep it alive.
            rightWatch.Dispose();
            Assert.Equal(leftWatch.Dead, await Task.WhenAny(leftWatch.Dead, Task.Delay(deadline * 4)));
            Assert.Contains("the right was silent", await leftWatch.Dead);
            right.Abort("test over");
            await drainRight.WaitAsync(TimeSpan.FromSeconds(10));
        }
    }

    private static (Stream A, Stream B, IDisposable? Listener) InMemoryPair()
    {
        (Stream a, Stream b) = InMemoryTransport.CreatePair();
        return (a, b, null);
    }

    private static (Stream A, Stream B, IDisposable? Listener) LoopbackPair()
    {
        var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        var client = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        client.Connect((System.Net.IPEndPoint)listener.LocalEndpoint);
        System.Net.Sockets.Socket server = listener.AcceptSocket();
        return (new SocketConnectionStream(client), new SocketConnectionStream(server), new ListenerStop(listener));
    }

    private sealed class ListenerStop(System.Net.Sockets.TcpListener listener) : IDisposable
    {
        public void Dispose() => listener.Stop();
    }

    [Fact]
    public async Task Stopping_a_watch_twice_after_its_loop_ended_is_harmless()
    {
        // A migration's recovery stops the watch and then closes its connections, which stops it
        // again: once the first stop had ended the loop, the second threw ObjectDisposedException
        // out of the recovery, and the migration ended without its report.
        (Stream a, Stream b) = InMemoryTransport.CreatePair();
        await using var channel = new FrameChannel(a);
        var watch = new PeerLiveness(TimeSpan.FromMilliseconds(200), "destination");
        watch.Watch(channel);
        watch.Dispose();
        await Task.Delay(300); // the loop ends and disposes its token source
        watch.Dispose();
        watch.Dispose();
        b.Dispose();
    }

    internal static void Drain(FrameChannel channel)
    {
        try
        {
            while (true)
            {
                channel.Receive();
            }
        }
        catch (Exception e) when (LinkFailure.Is(e))
        {
        }
    }
}

[Collection(nameof(TimingSensitive))]
public sealed class LivenessUnderStarvationTests
{
    /// <summary>
    /// The watch must not depend on the thread pool: on a busy host (or with many migrations at
    /// once) the pool can be starved for seconds, and a watch whose heartbeats waited for it was
    /// declared dead by its healthy peer. Here every pool thread is blocked (and the pool grows by
    /// about one thread per half second) for three deadlines, over a real loopback connection.
    /// </summary>
    [Fact]
    public async Task Heartbeats_keep_flowing_while_the_thread_pool_is_starved()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        var client = new System.Net.Sockets.TcpClient();
        client.Connect((System.Net.IPEndPoint)listener.LocalEndpoint);
        using System.Net.Sockets.TcpClient server = listener.AcceptTcpClient();
        await using var left = new FrameChannel(client.GetStream());
        await using var right = new FrameChannel(server.GetStream());
        var deadline = TimeSpan.FromMilliseconds(600);
        using var leftWatch = new PeerLiveness(deadline, "right");
        using var rightWatch = new PeerLiveness(deadline, "left");
        leftWatch.Watch(left);
        rightWatch.Watch(right);
        Task drainLeft = DedicatedThread.Start("drain-left", 0, () => LivenessTests.Drain(left));
        Task drainRight = DedicatedThread.Start("drain-right", 0, () => LivenessTests.Drain(right));

        using var release = new ManualResetEventSlim(false);
        ThreadPool.GetMinThreads(out int workers, out _);
        int blockers = workers + 16;
        var blocked = new CountdownEvent(blockers);
        for (int i = 0; i < blockers; i++)
        {
            ThreadPool.UnsafeQueueUserWorkItem(_ =>
            {
                release.Wait(deadline * 3);
                blocked.Signal();
            }, null);
        }

        Thread.Sleep(deadline * 3); // (this test's own thread, not an await: the pool is what is starved)
        release.Set();
        blocked.Wait(TimeSpan.FromSeconds(30));
        Thread.Sleep(deadline / 2); // a watch that itself waited for the pool judges the silence now
        bool leftDead = leftWatch.Dead.IsCompleted, rightDead = rightWatch.Dead.IsCompleted;
        Assert.False(leftDead, "a starved thread pool stopped the heartbeats: the left end declared its healthy peer dead");
        Assert.False(rightDead, "a starved thread pool stopped the heartbeats: the right end declared its healthy peer dead");
        left.Abort("test over");
        right.Abort("test over");
        await Task.WhenAll(drainLeft, drainRight).WaitAsync(TimeSpan.FromSeconds(10));
    }
}
