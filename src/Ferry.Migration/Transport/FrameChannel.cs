using System.Buffers.Binary;
using System.Diagnostics;
using System.Runtime.InteropServices;
using Ferry.Migration.Protocol;

namespace Ferry.Migration.Transport;

/// <summary>
/// One connection of a migration as a sequence of frames:
/// [u8 type | u8 flags | u16 reserved | u32 length] + payload. Works over any Stream (a TCP
/// NetworkStream, or the in-memory duplex pair used by tests and benchmarks). Sends are
/// serialized and paced by the migration's <see cref="LinkShaper"/>; receives validate the
/// header and bound the length before reading the payload into a reused buffer.
/// <para>Each operation has an async form (control, live rounds) and a blocking form for the
/// dedicated threads of the post-copy phase (fault path, push, push receiver), which block in
/// the kernel rather than hop through the thread pool: a fault's latency is then one wake-up
/// per side, not a queue of continuations.</para>
/// </summary>
public sealed class FrameChannel : IAsyncDisposable
{
    public const int HeaderSize = 8;
    public const int MaxPayload = 8 << 20;

    private readonly Stream _stream;
    private readonly LinkShaper _shaper;
    private readonly LinkClass _class;
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private const int SmallFrame = 4096;
    private readonly byte[] _sendHeader = new byte[HeaderSize];
    private byte[]? _smallFrame; // allocated by the first small send: a refused connection costs little
    private readonly byte[] _receiveHeader = new byte[HeaderSize];
    private byte[] _receiveBuffer = new byte[256]; // grows to the largest frame allowed and received
    private int _receiveLimit = MaxPayload;
    private long _bytesSent;
    private long _bytesReceived;

    // Liveness (see PeerLiveness): when a byte last arrived and a frame last left, in Stopwatch
    // ticks. One timestamp per read or frame: nothing allocated, no extra wake-up.
    private long _lastReceived = Stopwatch.GetTimestamp();
    private long _lastSent = Stopwatch.GetTimestamp();
    private readonly byte[] _heartbeat = new byte[HeaderSize];
    private volatile string? _abortReason;

    /// <param name="urgent">Frames on this channel go ahead of bulk traffic on the shaped link.</param>
    public FrameChannel(Stream stream, LinkShaper? shaper = null, bool urgent = false)
    {
        _stream = stream;
        _shaper = shaper ?? LinkShaper.None;
        _class = urgent ? LinkClass.Urgent : LinkClass.Bulk;
    }

    /// <summary>
    /// From now on this connection is used only by blocking operations on dedicated threads: a
    /// TCP connection (plain or under TLS) switches to blocking system calls (<see cref="SocketConnectionStream"/>).
    /// </summary>
    public void EnterKernelBlockingMode() => (_stream as IConnectionControl)?.EnterKernelBlockingMode();

    /// <summary>Caps the kernel's send and receive buffers of a TCP connection (see <see cref="SocketConnectionStream.LimitKernelBuffers"/>).</summary>
    public void LimitKernelBuffers(int send, int receive) => (_stream as IConnectionControl)?.LimitKernelBuffers(send, receive);

    /// <summary>Whether a frame (or part of one) has arrived and not been read; false where the transport cannot tell.</summary>
    public bool DataAvailable => (_stream as IConnectionControl)?.Available > 0;

    public long BytesSent => Interlocked.Read(ref _bytesSent);

    /// <summary>
    /// The largest payload a received frame may announce (at most <see cref="MaxPayload"/>). A
    /// larger one is refused from its header, before anything is allocated for it: before the
    /// handshake a host allows only a Hello's size, so an unauthenticated peer cannot make it
    /// allocate more.
    /// </summary>
    public int ReceiveLimit
    {
        get => _receiveLimit;
        set => _receiveLimit = Math.Clamp(value, 0, MaxPayload);
    }

    public long BytesReceived => Interlocked.Read(ref _bytesReceived);

    /// <param name="urgent">Send ahead of bulk traffic on the shaped link even on a bulk channel (switchover control frames).</param>
    public async ValueTask SendAsync(MessageType type, ReadOnlyMemory<byte> payload, CancellationToken cancellation, bool urgent = false)
    {
        if (payload.Length > MaxPayload)
        {
            throw new ArgumentException($"a {payload.Length}-byte frame exceeds the protocol limit", nameof(payload));
        }

        await _shaper.AcquireAsync(HeaderSize + payload.Length, urgent ? LinkClass.Urgent : _class, cancellation).ConfigureAwait(false);
        await _sendLock.WaitAsync(cancellation).ConfigureAwait(false);
        try
        {
            WriteHeader(type, payload.Length);
            if (payload.Length <= SmallFrame - HeaderSize)
            {
                // Small frames (requests, acknowledgements) go out in one write.
                byte[] frame = _smallFrame ??= new byte[SmallFrame];
                _sendHeader.AsSpan().CopyTo(frame);
                payload.Span.CopyTo(frame.AsSpan(HeaderSize));
                await _stream.WriteAsync(frame.AsMemory(0, HeaderSize + payload.Length), cancellation).ConfigureAwait(false);
            }
            else
            {
                await _stream.WriteAsync(_sendHeader, cancellation).ConfigureAwait(false);
                await _stream.WriteAsync(payload, cancellation).ConfigureAwait(false);
            }

            await _stream.FlushAsync(cancellation).ConfigureAwait(false);
            Interlocked.Add(ref _bytesSent, HeaderSize + payload.Length);
            Volatile.Write(ref _lastSent, Stopwatch.GetTimestamp());
        }
        catch (Exception e) when (_abortReason is not null && e is not PeerTimeoutException)
        {
            throw new PeerTimeoutException(_abortReason);
        }
        finally
        {
            _sendLock.Release();
        }
    }

    /// <summary>Waits until a prefetch frame could go on the link (<see cref="LinkShaper.WaitForPrefetchTurn"/>).</summary>
    public void WaitForPrefetchTurn() => _shaper.WaitForPrefetchTurn(CancellationToken.None);

    /// <summary>Whether a prefetch frame sent now would wait for the link (<see cref="LinkShaper.PrefetchWouldWait"/>).</summary>
    public bool PrefetchWouldWait => _shaper.PrefetchWouldWait(Stopwatch.GetTimestamp());

    /// <summary>When a bulk frame of <paramref name="payloadBytes"/> sent now would have crossed the emulated link (<see cref="LinkShaper.BulkDoneAt"/>).</summary>
    public long BulkDoneAt(int payloadBytes) => _shaper.BulkDoneAt(Stopwatch.GetTimestamp(), HeaderSize + payloadBytes);

    /// <summary>Waits until bulk traffic could start on the link now (<see cref="LinkShaper.WaitForBulkTurn"/>).</summary>
    public void WaitForBulkTurn() => _shaper.WaitForBulkTurn(CancellationToken.None);

    /// <summary>
    /// Blocking send on the calling thread, in class <paramref name="linkClass"/> (waiting until
    /// the frame has crossed the emulated link when <paramref name="untilSent"/>). With a
    /// <paramref name="stamp"/>, the time from <see cref="SendStamp.Since"/> to the moment the
    /// frame goes out (after the link and the send lock) is written into the payload at
    /// <see cref="SendStamp.Offset"/> as u32 nanoseconds, just before it is written: how long the
    /// frame waited for the link, measured where it waited. The payload must be the caller's own
    /// buffer when stamped.
    /// </summary>
    public void Send(MessageType type, ReadOnlyMemory<byte> payload, LinkClass linkClass, bool untilSent = false, SendStamp stamp = default)
    {
        if (payload.Length > MaxPayload)
        {
            throw new ArgumentException($"a {payload.Length}-byte frame exceeds the protocol limit", nameof(payload));
        }

        _shaper.Acquire(HeaderSize + payload.Length, linkClass, untilSent, CancellationToken.None);
        _sendLock.Wait();
        try
        {
            if (stamp.Since != 0)
            {
                long ns = (Stopwatch.GetTimestamp() - stamp.Since) * 1_000_000_000 / Stopwatch.Frequency;
                BinaryPrimitives.WriteUInt32LittleEndian(MemoryMarshal.AsMemory(payload).Span[stamp.Offset..], (uint)Math.Clamp(ns, 0, uint.MaxValue));
            }

            WriteHeader(type, payload.Length);
            if (payload.Length <= SmallFrame - HeaderSize)
            {
                byte[] frame = _smallFrame ??= new byte[SmallFrame];
                _sendHeader.AsSpan().CopyTo(frame);
                payload.Span.CopyTo(frame.AsSpan(HeaderSize));
                _stream.Write(frame, 0, HeaderSize + payload.Length);
            }
            else
            {
                _stream.Write(_sendHeader, 0, HeaderSize);
                _stream.Write(payload.Span);
            }

            _stream.Flush();
            Interlocked.Add(ref _bytesSent, HeaderSize + payload.Length);
            Volatile.Write(ref _lastSent, Stopwatch.GetTimestamp());
        }
        catch (Exception e) when (_abortReason is not null && e is not PeerTimeoutException)
        {
            throw new PeerTimeoutException(_abortReason);
        }
        finally
        {
            _sendLock.Release();
        }
    }

    /// <summary>How long since a byte last arrived on this connection (read, or seen waiting by <see cref="NoteWaitingBytes"/>).</summary>
    public TimeSpan SilentFor => Stopwatch.GetElapsedTime(Volatile.Read(ref _lastReceived));

    private int _waitingAtLastNote;

    /// <summary>
    /// Counts bytes that arrived but wait unread as a sign of life: if the transport holds more
    /// unread bytes than at the last call, the peer sent since, so the silence ends now. A reader
    /// that is late (its continuation waits for a starved thread pool, its thread for a core)
    /// must not make a live peer look dead; a peer that sends nothing still does, since stale
    /// unread bytes do not grow. Called by <see cref="PeerLiveness"/>'s checker only (one thread).
    /// </summary>
    public void NoteWaitingBytes()
    {
        int waiting = (_stream as IConnectionControl)?.Available ?? 0;
        if (waiting > _waitingAtLastNote)
        {
            Volatile.Write(ref _lastReceived, Stopwatch.GetTimestamp());
        }

        _waitingAtLastNote = waiting;
    }

    /// <summary>How long since a frame last left on this connection.</summary>
    public TimeSpan IdleFor => Stopwatch.GetElapsedTime(Volatile.Read(ref _lastSent));

    /// <summary>Why the connection was aborted (<see cref="Abort"/>), or null.</summary>
    public string? AbortReason => _abortReason;

    /// <summary>
    /// Sends an empty Heartbeat frame unless a send is under way (which tells the peer as much):
    /// never waits for the send lock, never for the link shaper (8 bytes). Called by
    /// <see cref="PeerLiveness"/> from its own thread, never from a hot path. Returns false if
    /// the connection is busy or broken.
    /// </summary>
    public bool TrySendHeartbeat()
    {
        if (_abortReason is not null)
        {
            return false;
        }

        try
        {
            if (!_sendLock.Wait(0))
            {
                return false;
            }
        }
        catch (ObjectDisposedException)
        {
            return false;
        }

        try
        {
            _heartbeat[0] = (byte)MessageType.Heartbeat;
            _stream.Write(_heartbeat, 0, HeaderSize);
            _stream.Flush();
            Interlocked.Add(ref _bytesSent, HeaderSize);
            Volatile.Write(ref _lastSent, Stopwatch.GetTimestamp());
            return true;
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or InvalidOperationException or OperationCanceledException or NotSupportedException or System.Net.Sockets.SocketException)
        {
            return false;
        }
        finally
        {
            try
            {
                _sendLock.Release();
            }
            catch (ObjectDisposedException)
            {
            }
        }
    }

    /// <summary>
    /// Declares the peer dead: every operation blocked on this connection, or started after,
    /// fails with a <see cref="PeerTimeoutException"/> carrying <paramref name="reason"/>.
    /// Closes the underlying stream (which wakes a thread blocked in the kernel on it).
    /// </summary>
    public void Abort(string reason)
    {
        _abortReason ??= reason;
        try
        {
            _stream.Dispose();
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or InvalidOperationException)
        {
        }
    }

    /// <summary>The blocking form of <see cref="ReceiveAsync"/>, for a dedicated thread.</summary>
    public (MessageType Type, ReadOnlyMemory<byte> Payload) Receive()
    {
        try
        {
            while (true)
            {
                ReadExact(_receiveHeader);
                int length = CheckHeader();
                Memory<byte> payload = _receiveBuffer.AsMemory(0, length);
                ReadExact(payload.Span);
                Interlocked.Add(ref _bytesReceived, HeaderSize + length);
                if (_receiveHeader[0] != (byte)MessageType.Heartbeat)
                {
                    return ((MessageType)_receiveHeader[0], payload);
                }
            }
        }
        catch (Exception e) when (_abortReason is not null && e is not PeerTimeoutException)
        {
            throw new PeerTimeoutException(_abortReason);
        }
    }

    private void WriteHeader(MessageType type, int length)
    {
        byte[] header = _sendHeader;
        header[0] = (byte)type;
        header[1] = 0;
        header[2] = 0;
        header[3] = 0;
        BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(4), length);
    }

    /// <summary>Validates the received header, grows the receive buffer if needed, and returns the payload length.</summary>
    private int CheckHeader()
    {
        byte type = _receiveHeader[0];
        int length = BinaryPrimitives.ReadInt32LittleEndian(_receiveHeader.AsSpan(4));
        if (type == (byte)MessageType.Invalid || type > (byte)MessageType.ChannelSync)
        {
            throw new ProtocolException($"invalid frame type {type}");
        }

        if (_receiveHeader[1] != 0 || _receiveHeader[2] != 0 || _receiveHeader[3] != 0)
        {
            throw new ProtocolException("reserved frame header bits are set");
        }

        if (type == (byte)MessageType.Heartbeat && length != 0)
        {
            throw new ProtocolException($"a heartbeat with a {length}-byte payload");
        }

        if (length < 0 || length > _receiveLimit)
        {
            throw new ProtocolException($"frame length {length} exceeds the {_receiveLimit} byte limit");
        }

        if (length > _receiveBuffer.Length)
        {
            _receiveBuffer = new byte[Math.Min(Math.Max(length, _receiveBuffer.Length * 2), _receiveLimit)];
        }

        return length;
    }

    private void ReadExact(Span<byte> buffer)
    {
        int read = 0;
        while (read < buffer.Length)
        {
            int n = _stream.Read(buffer[read..]);
            if (n == 0)
            {
                throw new ProtocolException(read == 0 && buffer.Length == HeaderSize ? "connection closed by peer" : "connection closed in the middle of a frame");
            }

            read += n;
            Volatile.Write(ref _lastReceived, Stopwatch.GetTimestamp());
        }
    }

    /// <summary>
    /// Receives the next frame. The payload memory is valid until the next call. A closed
    /// connection, a bad header or an oversized frame is a <see cref="ProtocolException"/>.
    /// </summary>
    public async ValueTask<(MessageType Type, ReadOnlyMemory<byte> Payload)> ReceiveAsync(CancellationToken cancellation)
    {
        try
        {
            while (true)
            {
                await ReadExactAsync(_receiveHeader, cancellation).ConfigureAwait(false);
                byte type = _receiveHeader[0];
                int length = CheckHeader();
                Memory<byte> payload = _receiveBuffer.AsMemory(0, length);
                await ReadExactAsync(payload, cancellation).ConfigureAwait(false);
                Interlocked.Add(ref _bytesReceived, HeaderSize + length);
                if (type != (byte)MessageType.Heartbeat)
                {
                    return ((MessageType)type, payload);
                }
            }
        }
        catch (Exception e) when (_abortReason is not null && e is not PeerTimeoutException && !cancellation.IsCancellationRequested)
        {
            throw new PeerTimeoutException(_abortReason);
        }
    }

    /// <summary>Receives the next frame with a payload of its own (valid after later receives: a frame awaited while others are received).</summary>
    public async Task<(MessageType Type, byte[] Payload)> ReceiveCopyAsync(CancellationToken cancellation)
    {
        (MessageType type, ReadOnlyMemory<byte> payload) = await ReceiveAsync(cancellation).ConfigureAwait(false);
        return (type, payload.ToArray());
    }

    /// <summary>Receives a frame that must be of <paramref name="expected"/> type; Failed/Refused/Cancel become errors with the peer's reason.</summary>
    public async ValueTask<ReadOnlyMemory<byte>> ExpectAsync(MessageType expected, CancellationToken cancellation)
    {
        (MessageType type, ReadOnlyMemory<byte> payload) = await ReceiveAsync(cancellation).ConfigureAwait(false);
        if (type == expected)
        {
            return payload;
        }

        throw Unexpected(type, payload, expected.ToString());
    }

    /// <summary>The error for a frame that is not allowed in the current state.</summary>
    public static Exception Unexpected(MessageType type, ReadOnlyMemory<byte> payload, string expected) => type switch
    {
        MessageType.Failed => new MigrationPeerException("peer failed: " + SafeReason(payload)),
        MessageType.Cancel => new MigrationPeerException("peer cancelled: " + SafeReason(payload)),
        MessageType.Refused => new MigrationPeerException("refused: " + HelloReplyMessage(payload)),
        _ => new ProtocolException($"unexpected {type} frame (expected {expected})"),
    };

    private static string SafeReason(ReadOnlyMemory<byte> payload)
    {
        try
        {
            return ReasonMessage.Decode(payload.Span);
        }
        catch (ProtocolException)
        {
            return "(unreadable reason)";
        }
    }

    private static string HelloReplyMessage(ReadOnlyMemory<byte> payload)
    {
        try
        {
            return HelloReply.Decode(payload.Span).Message;
        }
        catch (ProtocolException)
        {
            return "(unreadable reason)";
        }
    }

    private async ValueTask ReadExactAsync(Memory<byte> buffer, CancellationToken cancellation)
    {
        int read = 0;
        while (read < buffer.Length)
        {
            int n = await _stream.ReadAsync(buffer[read..], cancellation).ConfigureAwait(false);
            if (n == 0)
            {
                throw new ProtocolException(read == 0 && buffer.Length == HeaderSize ? "connection closed by peer" : "connection closed in the middle of a frame");
            }

            read += n;
            Volatile.Write(ref _lastReceived, Stopwatch.GetTimestamp());
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stream.DisposeAsync().ConfigureAwait(false);
        _sendLock.Dispose();
    }
}

/// <summary>Where and since when <see cref="FrameChannel.Send"/> stamps a frame's wait for the link.</summary>
public readonly record struct SendStamp(int Offset, long Since);

/// <summary>The peer reported failure, cancelled, or refused: the message carries its reason.</summary>
public sealed class MigrationPeerException(string message) : Exception(message);

/// <summary>The peer went silent past the deadline (stalled, or the link died without a reset): the connection was aborted.</summary>
public sealed class PeerTimeoutException(string message) : IOException(message);
