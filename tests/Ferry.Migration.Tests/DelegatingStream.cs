namespace Ferry.Migration.Tests;

/// <summary>A stream that passes everything to another; tests override what they want to watch or break.</summary>
internal abstract class DelegatingStream(Stream inner) : Stream
{
    protected Stream Inner => inner;

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override void Flush() => inner.Flush();

    public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);

    public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, count);

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => inner.ReadAsync(buffer, cancellationToken);

    /// <summary>Every write, blocking or async, passes here first: what it returns is written.</summary>
    protected virtual ReadOnlyMemory<byte> OnWrite(ReadOnlyMemory<byte> buffer) => buffer;

    public override void Write(byte[] buffer, int offset, int count) => inner.Write(OnWrite(buffer.AsMemory(offset, count)).Span);

    public override void Write(ReadOnlySpan<byte> buffer) => inner.Write(OnWrite(buffer.ToArray()).Span);

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) => inner.WriteAsync(OnWrite(buffer), cancellationToken);

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            inner.Dispose();
        }

        base.Dispose(disposing);
    }
}
