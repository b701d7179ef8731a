using System.Buffers.Binary;
using System.Diagnostics;
using Ferry.Migration.Protocol;

namespace Ferry.Migration.Tests;

/// <summary>What a <see cref="FaultyLink"/> does to the connection once its trigger fires.</summary>
public enum LinkFaultKind
{
    /// <summary>Reset: both directions fail at once (an RST, a dead agent's closed socket).</summary>
    Cut,

    /// <summary>Black hole: nothing more crosses either way and nothing fails (a SIGSTOP'd peer, a dead link without a reset).</summary>
    Stall,

    /// <summary>Nothing crosses for <see cref="LinkFault.Delay"/>, then everything does (a stall shorter than the deadline).</summary>
    Delay,

    /// <summary>One byte of the frame that fired the trigger is flipped (its first byte after the header).</summary>
    Corrupt,
}

/// <summary>
/// When and how a link fails: at the <see cref="Frame"/>-th frame the source writes of a type
/// (and, for Pages, of a phase), or once <see cref="AfterBytes"/> bytes have been written.
/// </summary>
internal sealed record LinkFault(LinkFaultKind Kind)
{
    public MessageType? Type { get; init; }

    public PagePhase? Phase { get; init; }

    /// <summary>A second phase that matches too (the post-copy phase's pages go as Push or as windows, FaultReply).</summary>
    public PagePhase? OrPhase { get; init; }

    /// <summary>Fires at this matching frame (1 = the first).</summary>
    public int Frame { get; init; } = 1;

    /// <summary>Fires once this many bytes were written (if no frame is named).</summary>
    public long AfterBytes { get; init; } = long.MaxValue;

    public TimeSpan Delay { get; init; }

    /// <summary>A stall or cut that comes right after the frame that fires it: that frame still crosses (nothing after it does, either way).</summary>
    public bool AfterTheFrame { get; init; }

    public static LinkFault CutAt(MessageType type, PagePhase? phase = null, int frame = 1) => new(LinkFaultKind.Cut) { Type = type, Phase = phase, Frame = frame };

    public static LinkFault StallAt(MessageType type, PagePhase? phase = null, int frame = 1) => new(LinkFaultKind.Stall) { Type = type, Phase = phase, Frame = frame };
}

/// <summary>
/// The fault proxy of the in-process tests: stands on the source's end of one connection of a
/// local migration (<c>LocalMigrationHooks.Intercept</c>) and cuts, stalls, delays or corrupts it
/// when its trigger fires, recording when. It parses the frames the source writes (header, then
/// payload) to find the trigger; what the destination writes passes through it too, so a stall
/// holds both directions.
/// </summary>
internal sealed class FaultyLink(Stream inner, LinkFault fault) : Stream
{
    private readonly TaskCompletionSource _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly object _lock = new();
    private long _written;
    private int _matches;
    private long _firedAt;
    private long _releaseAt;
    private bool _fireAfterWrite;

    // Frame parsing of what the source writes: bytes still to skip of the current payload, and
    // the header being assembled.
    private readonly byte[] _header = new byte[8];
    private int _headerFill;
    private long _payloadLeft;
    private bool _payloadIsMatch;
    private int _payloadOffset;

    /// <summary>Stopwatch ticks when the fault fired (0: not yet).</summary>
    public long FiredAt => Interlocked.Read(ref _firedAt);

    public bool Fired => FiredAt != 0;

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    private void Fire()
    {
        if (Interlocked.CompareExchange(ref _firedAt, Stopwatch.GetTimestamp(), 0) == 0)
        {
            _releaseAt = _firedAt + (long)(fault.Delay.TotalSeconds * Stopwatch.Frequency);
            if (fault.Kind == LinkFaultKind.Cut)
            {
                inner.Dispose();
            }
        }
    }

    /// <summary>The matching frame was seen: fire now, or once the whole frame has crossed (<see cref="LinkFault.AfterTheFrame"/>; its payload may come in later writes).</summary>
    private void Trigger()
    {
        if (fault.AfterTheFrame)
        {
            _fireAfterWrite = true;
        }
        else
        {
            Fire();
        }
    }

    /// <summary>Counts frames in what the source writes; returns the buffer as it must go out (corrupted if so).</summary>
    private void Inspect(ReadOnlySpan<byte> buffer, out byte[]? copy)
    {
        copy = null;
        lock (_lock)
        {
            int i = 0;
            while (i < buffer.Length)
            {
                if (_payloadLeft > 0)
                {
                    int n = (int)Math.Min(_payloadLeft, buffer.Length - i);
                    if (_payloadIsMatch && _payloadOffset == 0)
                    {
                        if (fault.Phase is PagePhase p && buffer[i] != (byte)p && !(fault.OrPhase is PagePhase q && buffer[i] == (byte)q))
                        {
                            _payloadIsMatch = false;
                        }
                        else if (++_matches == fault.Frame)
                        {
                            if (fault.Kind == LinkFaultKind.Corrupt)
                            {
                                // A byte well inside the payload (page content in a Pages frame).
                                copy ??= buffer.ToArray();
                                copy[i + Math.Min(n - 1, 100)] ^= 0x5A;
                            }

                            Trigger();
                        }
                    }

                    _payloadOffset += n;
                    _payloadLeft -= n;
                    i += n;
                    continue;
                }

                _header[_headerFill++] = buffer[i++];
                if (_headerFill == 8)
                {
                    _headerFill = 0;
                    _payloadLeft = BinaryPrimitives.ReadInt32LittleEndian(_header.AsSpan(4));
                    _payloadOffset = 0;
                    _payloadIsMatch = fault.Type is MessageType t && _header[0] == (byte)t;
                    if (_payloadIsMatch && _payloadLeft == 0 && ++_matches == fault.Frame)
                    {
                        Trigger();
                    }
                }
            }

            _written += buffer.Length;
            if (_written >= fault.AfterBytes)
            {
                Fire();
            }
        }
    }

    /// <summary>Holds an operation while the fault says so: for ever (stall, until closed) or until the delay ends.</summary>
    private async ValueTask HoldAsync(CancellationToken cancellation)
    {
        if (!Fired)
        {
            return;
        }

        switch (fault.Kind)
        {
            case LinkFaultKind.Cut:
                throw new IOException("connection reset (fault proxy)");
            case LinkFaultKind.Stall:
                await _closed.Task.WaitAsync(cancellation).ConfigureAwait(false);
                throw new IOException("connection closed while stalled (fault proxy)");
            case LinkFaultKind.Delay:
                long wait = _releaseAt - Stopwatch.GetTimestamp();
                if (wait > 0)
                {
                    await Task.WhenAny(Task.Delay(TimeSpan.FromSeconds((double)wait / Stopwatch.Frequency), cancellation), _closed.Task).ConfigureAwait(false);
                }

                if (_closed.Task.IsCompleted)
                {
                    ObjectDisposedException.ThrowIf(true, this);
                }

                break;
        }
    }

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (fault.AfterBytes == 0)
        {
            Fire();
        }

        await HoldAsync(cancellationToken).ConfigureAwait(false);
        Inspect(buffer.Span, out byte[]? copy);
        ReadOnlyMemory<byte> data = copy ?? buffer;
        if (Fired && fault.Kind is LinkFaultKind.Stall or LinkFaultKind.Cut)
        {
            // The frame that fired the trigger does not cross.
            await HoldAsync(cancellationToken).ConfigureAwait(false);
        }

        await inner.WriteAsync(data, cancellationToken).ConfigureAwait(false);
        lock (_lock)
        {
            if (_fireAfterWrite && _payloadLeft == 0 && _headerFill == 0)
            {
                _fireAfterWrite = false;
                Fire(); // the whole frame crossed; nothing after it will
            }
        }
    }

    public override void Write(ReadOnlySpan<byte> buffer) => WriteAsync(buffer.ToArray()).AsTask().GetAwaiter().GetResult();

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        await HoldAsync(cancellationToken).ConfigureAwait(false);
        Task<int> read = inner.ReadAsync(buffer, cancellationToken).AsTask();
        await Task.WhenAny(read, _closed.Task).ConfigureAwait(false);
        if (!read.IsCompleted)
        {
            ObjectDisposedException.ThrowIf(true, this);
        }

        int n = await read.ConfigureAwait(false);

        // What arrives after the fault fired is held with everything else.
        await HoldAsync(cancellationToken).ConfigureAwait(false);
        return n;
    }

    public override int Read(Span<byte> buffer)
    {
        byte[] temp = new byte[buffer.Length];
        int n = ReadAsync(temp).AsTask().GetAwaiter().GetResult();
        temp.AsSpan(0, n).CopyTo(buffer);
        return n;
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Flush() => inner.Flush();

    public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _closed.TrySetResult();
            inner.Dispose();
        }

        base.Dispose(disposing);
    }
}
