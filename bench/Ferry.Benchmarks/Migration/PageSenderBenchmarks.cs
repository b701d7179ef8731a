using BenchmarkDotNet.Attributes;
using System.IO.Pipelines;
using Ferry.Benchmarks.Common;
using Ferry.Machine.Memory;
using Ferry.Migration.Mechanisms;
using Ferry.Migration.Protocol;
using Ferry.Migration.Transport;

namespace Ferry.Benchmarks.Migration;

/// <summary>
/// Pages per second through PageSender (batching, zero detection, optional LZ4, page hashes,
/// the books) and FrameChannel over the in-memory transport (two pipes), with a reader task
/// draining the other end's FrameChannel. One operation = one page; each invocation sends
/// all <see cref="Pages"/> pages of a 64 MiB guest memory and waits until the reader has
/// received every byte, so Mean is end-to-end ns per page.
///
///   raw    non-zero, incompressible pages (xorshift), compression off: 4 KiB on the wire per page
///   zero   never-written pages, compression off: a 7-byte marker per page
///   lz4    non-zero structured pages (counters, a text pattern), compression on
///
/// Transport:
///   inmemory   InMemoryTransport.CreatePair() as the migration tests use it (pipes with 4 KiB
///              segments, pausing the writer at 4 MiB)
///   pooled     the same pipe (same thresholds) with 64 KiB segments and a bench-local memory pool
///              that keeps its buffers. InMemoryTransport's pipes hold up to 4 MiB in 4 KiB segments
///              (~1000 in flight), more than ArrayPool.Shared keeps buffers (a few dozen per size)
///              and more than the pipe keeps BufferSegment objects (256): so they allocate about
///              one 4 KiB buffer (and one ~80-byte segment) per 4 KiB written.
///   sink       a stream that discards what it is given (no reader, no pipe): what PageSender +
///              FrameChannel allocate themselves. Not end-to-end.
///
/// Batches are MigrationOptions' default of 32 pages. [MemoryDiagnoser] counts the allocations of
/// the whole process (sender, pipe and reader), divided by pages.
/// </summary>
[MemoryDiagnoser]
public class PageSenderBenchmarks
{
    public const int MemoryMiB = 64;
    public const int Pages = MemoryMiB << 20 >> GuestMemory.PageShift;
    public const int BatchPages = 32;

    private GuestMemory _memory = null!;
    private PageBitmap _all = null!;
    private FrameChannel _tx = null!;
    private FrameChannel _rx = null!;
    private PageSender _sender = null!;
    private CancellationTokenSource _stop = null!;
    private Task _reader = null!;
    private long _pagesReceived;

    [Params("raw", "zero", "lz4")]
    public string Content { get; set; } = "raw";

    [Params("inmemory", "pooled", "sink")]
    public string Transport { get; set; } = "inmemory";

    [GlobalSetup]
    public void Setup()
    {
        _memory = new GuestMemory(MemoryMiB << 20);
        Fill(_memory, Content);
        _all = new PageBitmap(_memory.PageCount);
        _all.SetAll();

        (Stream a, Stream b) = Transport switch
        {
            "inmemory" => InMemoryTransport.CreatePair(),
            "pooled" => PooledPipe(),
            "sink" => (new SinkStream(), new SinkStream()),
            _ => throw new ArgumentException($"unknown transport {Transport}"),
        };
        _tx = new FrameChannel(a);
        _rx = new FrameChannel(b);
        _sender = new PageSender(_tx, _memory, new SourceBooks(_memory.PageCount), BatchPages, compress: Content == "lz4");
        _stop = new CancellationTokenSource();
        _reader = Transport == "sink" ? Task.Delay(Timeout.Infinite, _stop.Token) : Task.Run(DrainAsync);

        // Warm up, then report what one invocation allocates (whole process and sending thread).
        SendAll();
        long total = GC.GetTotalAllocatedBytes(precise: true);
        long thread = GC.GetAllocatedBytesForCurrentThread();
        SendAll();
        long totalDelta = GC.GetTotalAllocatedBytes(precise: true) - total;
        long threadDelta = GC.GetAllocatedBytesForCurrentThread() - thread;
        Console.WriteLine($"// page sender {Content} over {Transport}: {Pages} pages, {_tx.BytesSent / 2} wire bytes per pass ({_tx.BytesSent / 2.0 / Pages:F0} B/page); "
            + $"allocated {totalDelta} B in the process ({(double)totalDelta / Pages:F2} B/page), {threadDelta} B on the sending thread");
    }

    [Benchmark(OperationsPerInvoke = Pages)]
    public int SendAll()
    {
        long target = Interlocked.Read(ref _pagesReceived) + Pages;
        ValueTask<int> send = _sender.SendAllAsync(_all, PagePhase.Live, CancellationToken.None);
        int n = send.IsCompletedSuccessfully ? send.Result : send.AsTask().GetAwaiter().GetResult();
        if (Transport == "sink")
        {
            return n;
        }

        // End to end: wait for the reader to take the last frame.
        var spin = new SpinWait();
        while (Interlocked.Read(ref _pagesReceived) < target)
        {
            if (_reader.IsCompleted)
            {
                _reader.GetAwaiter().GetResult();
                throw new InvalidOperationException("the reader stopped");
            }

            spin.SpinOnce();
        }

        return n;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _stop.Cancel();
        _tx.DisposeAsync().AsTask().GetAwaiter().GetResult();
        try
        {
            _reader.GetAwaiter().GetResult();
        }
        catch (Exception e) when (e is OperationCanceledException or ProtocolException or InvalidOperationException)
        {
        }

        _rx.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _stop.Dispose();
        _memory.Dispose();
    }

    /// <summary>One direction of a connection: InMemoryTransport's pipe options with a retaining pool.</summary>
    private static (Stream Writer, Stream Reader) PooledPipe()
    {
        var pipe = new Pipe(new PipeOptions(pool: new RetainingMemoryPool(), pauseWriterThreshold: 4 << 20, resumeWriterThreshold: 2 << 20, minimumSegmentSize: 64 << 10, useSynchronizationContext: false));
        return (pipe.Writer.AsStream(), pipe.Reader.AsStream());
    }

    private async Task DrainAsync()
    {
        while (true)
        {
            (MessageType type, ReadOnlyMemory<byte> payload) = await _rx.ReceiveAsync(_stop.Token).ConfigureAwait(false);
            if (type != MessageType.Pages)
            {
                throw new InvalidOperationException($"unexpected {type} frame");
            }

            // The batch header's page count (u16 at offset 2).
            Interlocked.Add(ref _pagesReceived, payload.Span[2] | (payload.Span[3] << 8));
        }
    }

    private static void Fill(GuestMemory memory, string content)
    {
        byte[] page = new byte[GuestMemory.PageSize];
        ulong state = 0x9E3779B97F4A7C15;
        for (int p = 0; p < memory.PageCount; p++)
        {
            switch (content)
            {
                case "zero":
                    return;
                case "raw":
                    for (int i = 0; i < page.Length; i += 8)
                    {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        BitConverter.TryWriteBytes(page.AsSpan(i), state);
                    }

                    break;
                case "lz4":
                    // Half counters (record ids, small integers), half a repeated text pattern.
                    for (int i = 0; i < page.Length / 2; i += 8)
                    {
                        BitConverter.TryWriteBytes(page.AsSpan(i), ((ulong)p << 20) | (uint)(i * 7));
                    }

                    for (int i = page.Length / 2; i < page.Length; i++)
                    {
                        page[i] = (byte)"key=value; status=ok; "[(i + p) % 22];
                    }

                    break;
                default:
                    throw new ArgumentException($"unknown content {content}", nameof(content));
            }

            memory.WritePhysical(memory.BaseAddress + ((ulong)p << GuestMemory.PageShift), page);
        }
    }

    /// <summary>Discards writes; reads end at once.</summary>
    private sealed class SinkStream : Stream
    {
        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override void Flush()
        {
        }

        public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public override int Read(byte[] buffer, int offset, int count) => 0;

        public override void Write(byte[] buffer, int offset, int count)
        {
        }

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
