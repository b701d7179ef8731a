using System.Net.Security;
using System.Security.Authentication;

namespace Ferry.Migration.Transport;

/// <summary>
/// TLS over another transport (TCP between hosts, in-memory pipes in tests): every connection
/// is an <see cref="SslStream"/> with mutual certificate authentication (<see cref="TlsSettings"/>).
/// A listener answers a peer that speaks plain frames instead of TLS with a plain Refused frame,
/// so that a source without TLS is told why, not just disconnected.
/// </summary>
public sealed class TlsTransport(MigrationTransport inner, TlsSettings settings) : MigrationTransport
{
    /// <summary>The first byte of a TLS handshake record.</summary>
    private const byte TlsHandshakeRecord = 0x16;

    public static readonly TimeSpan HandshakeTimeout = TimeSpan.FromSeconds(10);

    public override async Task<Stream> ConnectAsync(string endpoint, CancellationToken cancellation)
    {
        Stream raw = await inner.ConnectAsync(endpoint, cancellation).ConfigureAwait(false);
        string host = endpoint;
        int colon = endpoint.LastIndexOf(':');
        if (colon > 0)
        {
            host = endpoint[..colon].Trim('[', ']');
        }

        string? refusal = null;
        var tls = new TlsConnectionStream(raw, raw as IConnectionControl, endpoint);
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
            timeout.CancelAfter(HandshakeTimeout);
            await tls.AuthenticateAsClientAsync(settings.ClientOptions(host, r => refusal = r), timeout.Token).ConfigureAwait(false);
            return tls;
        }
        catch (Exception e) when (e is AuthenticationException or IOException or OperationCanceledException && !cancellation.IsCancellationRequested)
        {
            await tls.DisposeAsync().ConfigureAwait(false);
            throw new MigrationPeerException(refusal is not null
                ? $"TLS handshake with {endpoint} failed: {refusal}"
                : $"TLS handshake with {endpoint} failed (does it speak TLS, and does it trust this host's certificate?): {Inner(e).Message}");
        }
    }

    public override IConnectionListener Listen(string endpoint) => new Listener(inner.Listen(endpoint), settings);

    private static Exception Inner(Exception e) => e.InnerException is { } i && e is AuthenticationException ? i : e;

    private sealed class Listener(IConnectionListener inner, TlsSettings settings) : IConnectionListener
    {
        public string Endpoint => inner.Endpoint;

        public async ValueTask<AcceptedConnection> AcceptAsync(CancellationToken cancellation)
        {
            AcceptedConnection connection = await inner.AcceptAsync(cancellation).ConfigureAwait(false);
            return connection.WithHandshake((raw, ct) => ServerHandshakeAsync(raw, connection.Stream as IConnectionControl, ct));
        }

        private async Task<Stream> ServerHandshakeAsync(Stream raw, IConnectionControl? control, CancellationToken cancellation)
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
            timeout.CancelAfter(HandshakeTimeout);
            byte[] first = new byte[1];
            if (await raw.ReadAsync(first, timeout.Token).ConfigureAwait(false) != 1)
            {
                throw new MigrationPeerException("closed before the TLS handshake");
            }

            if (first[0] != TlsHandshakeRecord)
            {
                // A plain migration peer: its Hello is refused in its own framing.
                await MigrationAcceptor.RefuseAsync(new FrameChannel(raw), "this destination accepts only TLS connections (give the source host --tls-cert, --tls-key and --tls-ca)").ConfigureAwait(false);
                throw new MigrationPeerException("plain connection to the TLS endpoint (not TLS)");
            }

            string? refusal = null;
            var tls = new TlsConnectionStream(new PrefixedStream(first[0], raw), control, "peer");
            try
            {
                await tls.AuthenticateAsServerAsync(settings.ServerOptions(r => refusal = r), timeout.Token).ConfigureAwait(false);
                return tls;
            }
            catch (Exception e) when (e is AuthenticationException or IOException or OperationCanceledException)
            {
                await tls.DisposeAsync().ConfigureAwait(false);
                throw new MigrationPeerException(refusal is not null ? $"TLS: {refusal}" : $"TLS handshake failed: {Inner(e).Message}");
            }
        }

        public ValueTask DisposeAsync() => inner.DisposeAsync();
    }
}

/// <summary>
/// An <see cref="SslStream"/> that passes the migration's connection controls to the socket
/// under it: after the switchover the TLS records of the fault connection are read and written
/// by blocking system calls, as plain TCP's are. <see cref="Available"/> counts encrypted
/// bytes not yet read (a hint: a record already decrypted into SslStream's buffer is not seen).
/// The first read of a client connection turns a refusal after the handshake (TLS 1.3 checks
/// the client's certificate after the client has finished) into a clear error.
/// </summary>
internal sealed class TlsConnectionStream(Stream inner, IConnectionControl? control, string peer)
    : SslStream(inner, leaveInnerStreamOpen: false), IConnectionControl
{
    private volatile bool _received;

    public int Available => control?.Available ?? 0;

    public void EnterKernelBlockingMode() => control?.EnterKernelBlockingMode();

    public void LimitKernelBuffers(int send, int receive) => control?.LimitKernelBuffers(send, receive);

    public override int Read(Span<byte> buffer)
    {
        if (_received)
        {
            return base.Read(buffer);
        }

        try
        {
            return Received(base.Read(buffer));
        }
        catch (Exception e) when (e is IOException or AuthenticationException)
        {
            throw Refused(e);
        }
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (_received)
        {
            return await base.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
        }

        try
        {
            return Received(await base.ReadAsync(buffer, cancellationToken).ConfigureAwait(false));
        }
        catch (Exception e) when (e is IOException or AuthenticationException)
        {
            throw Refused(e);
        }
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        => ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    private int Received(int n)
    {
        if (n == 0)
        {
            throw Refused(null);
        }

        _received = true;
        return n;
    }

    private MigrationPeerException Refused(Exception? e)
        => new($"TLS: {peer} closed the connection before its first message (does it trust this host's certificate?){(e is null ? "" : ": " + e.Message)}");
}

/// <summary>A stream that yields one byte already read from it before the rest.</summary>
internal sealed class PrefixedStream(byte first, Stream inner) : Stream
{
    private bool _pending = true;

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override int Read(Span<byte> buffer)
    {
        if (_pending && buffer.Length > 0)
        {
            _pending = false;
            buffer[0] = first;
            return 1;
        }

        return inner.Read(buffer);
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (_pending && buffer.Length > 0)
        {
            _pending = false;
            buffer.Span[0] = first;
            return ValueTask.FromResult(1);
        }

        return inner.ReadAsync(buffer, cancellationToken);
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        => ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(ReadOnlySpan<byte> buffer) => inner.Write(buffer);

    public override void Write(byte[] buffer, int offset, int count) => inner.Write(buffer, offset, count);

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) => inner.WriteAsync(buffer, cancellationToken);

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        => inner.WriteAsync(buffer, offset, count, cancellationToken);

    public override void Flush() => inner.Flush();

    public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);

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
