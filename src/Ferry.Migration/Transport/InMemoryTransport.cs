using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using System.Threading.Channels;

namespace Ferry.Migration.Transport;

/// <summary>
/// A connected pair of in-memory streams (two pipes), standing in for a TCP connection in
/// unit tests and benchmarks: the same FrameChannel and migration code run over it. As a
/// <see cref="MigrationTransport"/>, endpoints are names local to one instance: a connect to a
/// name that listens hands the listener the other end of a new pair.
/// </summary>
public sealed class InMemoryTransport : MigrationTransport
{
    private readonly ConcurrentDictionary<string, Listener> _listeners = new();

    public override Task<Stream> ConnectAsync(string endpoint, CancellationToken cancellation)
    {
        if (!_listeners.TryGetValue(endpoint, out Listener? listener))
        {
            throw new IOException($"nothing listens at '{endpoint}'");
        }

        (Stream a, Stream b) = CreatePair();
        if (!listener.Queue.Writer.TryWrite(new AcceptedConnection("in-memory", b)))
        {
            a.Dispose();
            b.Dispose();
            throw new IOException($"'{endpoint}' no longer listens");
        }

        return Task.FromResult(a);
    }

    public override IConnectionListener Listen(string endpoint)
    {
        var listener = new Listener(this, endpoint);
        if (!_listeners.TryAdd(endpoint, listener))
        {
            throw new ArgumentException($"'{endpoint}' is already listening", nameof(endpoint));
        }

        return listener;
    }

    private sealed class Listener(InMemoryTransport owner, string endpoint) : IConnectionListener
    {
        public Channel<AcceptedConnection> Queue { get; } = Channel.CreateUnbounded<AcceptedConnection>();

        public string Endpoint => endpoint;

        public async ValueTask<AcceptedConnection> AcceptAsync(CancellationToken cancellation)
        {
            try
            {
                return await Queue.Reader.ReadAsync(cancellation).ConfigureAwait(false);
            }
            catch (ChannelClosedException)
            {
                throw new ObjectDisposedException(nameof(IConnectionListener));
            }
        }

        public ValueTask DisposeAsync()
        {
            owner._listeners.TryRemove(new KeyValuePair<string, Listener>(endpoint, this));
            Queue.Writer.TryComplete();
            while (Queue.Reader.TryRead(out AcceptedConnection? pending))
            {
                pending.Stream.Dispose();
            }

            return ValueTask.CompletedTask;
        }
    }

    public static (Stream A, Stream B) CreatePair()
    {
        // 64 KiB segments: few enough buffers for the pool to keep, so a steady stream of page
        // batches allocates (almost) nothing (bench/ PageSenderBenchmarks). The backlog may
        // exceed the largest frame, so a writer never waits for a reader to finish a frame.
        var options = new PipeOptions(pauseWriterThreshold: 16 << 20, resumeWriterThreshold: 8 << 20, minimumSegmentSize: 64 << 10, useSynchronizationContext: false);
        var aToB = new Pipe(options);
        var bToA = new Pipe(options);
        var aToBCount = new PipeCount();
        var bToACount = new PipeCount();
        return (new DuplexPipeStream(bToA.Reader, bToACount, aToB.Writer, aToBCount), new DuplexPipeStream(aToB.Reader, aToBCount, bToA.Writer, bToACount));
    }

    /// <summary>Bytes written into one pipe and read out of it: the unread rest is what a socket's receive queue would hold.</summary>
    private sealed class PipeCount
    {
        public long Written;
        public long Read;
    }

    /// <summary>
    /// One end: reads one pipe, writes the other. As a socket does, it tells how many bytes
    /// arrived and wait unread (<see cref="IConnectionControl.Available"/>); it has no kernel
    /// mode or buffers to set.
    /// </summary>
    private sealed class DuplexPipeStream(PipeReader reader, PipeCount inbound, PipeWriter writer, PipeCount outbound) : Stream, IConnectionControl
    {
        private readonly Stream _read = reader.AsStream();
        private readonly Stream _write = writer.AsStream();

        public int Available => (int)Math.Clamp(Interlocked.Read(ref inbound.Written) - Interlocked.Read(ref inbound.Read), 0, int.MaxValue);

        public void EnterKernelBlockingMode()
        {
        }

        public void LimitKernelBuffers(int send, int receive)
        {
        }

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override void Flush() => _write.Flush();

        public override Task FlushAsync(CancellationToken cancellationToken) => _write.FlushAsync(cancellationToken);

        public override int Read(byte[] buffer, int offset, int count) => Counted(_read.Read(buffer, offset, count));

        [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))] // (pooled: a steady stream of frames allocates nothing)
        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
            => Counted(await _read.ReadAsync(buffer, cancellationToken).ConfigureAwait(false));

        public override void Write(byte[] buffer, int offset, int count)
        {
            _write.Write(buffer, offset, count);
            Interlocked.Add(ref outbound.Written, count);
        }

        [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            await _write.WriteAsync(buffer, cancellationToken).ConfigureAwait(false);
            Interlocked.Add(ref outbound.Written, buffer.Length);
        }

        private int Counted(int read)
        {
            Interlocked.Add(ref inbound.Read, read);
            return read;
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                // As closing a socket does: a read blocked on this end wakes (and fails).
                reader.CancelPendingRead();
                reader.Complete();
                writer.Complete();
            }

            base.Dispose(disposing);
        }
    }
}
