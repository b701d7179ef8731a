namespace Ferry.Migration.Transport;

/// <summary>
/// How migration connections are opened and accepted: TCP between hosts
/// (<see cref="TcpTransport"/>), in-memory pipes inside one process
/// (<see cref="InMemoryTransport"/>), and TLS as a decorator over either
/// (<see cref="TlsTransport"/>). Everything above it (the handshake, the pairing of a
/// migration's main and fault connections in <see cref="MigrationListener"/>, the protocol)
/// is the same code whichever transport carries it.
/// </summary>
public abstract class MigrationTransport
{
    /// <summary>Opens one connection to a destination's data endpoint ("host:port" for TCP).</summary>
    public abstract Task<Stream> ConnectAsync(string endpoint, CancellationToken cancellation);

    /// <summary>Starts accepting connections at <paramref name="endpoint"/> ("addr:port"; port 0: any free port).</summary>
    public abstract IConnectionListener Listen(string endpoint);
}

/// <summary>Connections arriving at one endpoint.</summary>
public interface IConnectionListener : IAsyncDisposable
{
    /// <summary>The endpoint actually bound (a free port resolved).</summary>
    string Endpoint { get; }

    /// <summary>The next connection, not yet authenticated; throws once the listener is disposed.</summary>
    ValueTask<AcceptedConnection> AcceptAsync(CancellationToken cancellation);
}

/// <summary>
/// A connection as accepted: <see cref="OpenAsync"/> runs the transport's handshake (TLS) on the
/// connection's own task, so that a slow or hostile peer never holds up the accept loop.
/// </summary>
public sealed class AcceptedConnection
{
    private readonly Func<Stream, CancellationToken, Task<Stream>>? _handshake;

    public AcceptedConnection(string peer, Stream stream)
        : this(peer, stream, null)
    {
    }

    private AcceptedConnection(string peer, Stream stream, Func<Stream, CancellationToken, Task<Stream>>? handshake)
    {
        Peer = peer;
        Stream = stream;
        _handshake = handshake;
    }

    /// <summary>The remote address, for logs.</summary>
    public string Peer { get; }

    /// <summary>The connection as accepted, before any handshake (to close it).</summary>
    public Stream Stream { get; }

    /// <summary>This connection with one more handshake run after the ones it has.</summary>
    public AcceptedConnection WithHandshake(Func<Stream, CancellationToken, Task<Stream>> handshake)
    {
        Func<Stream, CancellationToken, Task<Stream>>? inner = _handshake;
        return new AcceptedConnection(Peer, Stream, inner is null ? handshake : async (s, ct) => await handshake(await inner(s, ct).ConfigureAwait(false), ct).ConfigureAwait(false));
    }

    /// <summary>The stream to speak the migration protocol on, after the transport's handshakes.</summary>
    public Task<Stream> OpenAsync(CancellationToken cancellation) => _handshake is null ? Task.FromResult(Stream) : _handshake(Stream, cancellation);
}

/// <summary>
/// What the migration asks of a connection beyond reading and writing, where the transport
/// can do it (TCP, and TLS over TCP): see <see cref="SocketConnectionStream"/>.
/// </summary>
public interface IConnectionControl
{
    /// <summary>Bytes received and not yet read (0 where unknown).</summary>
    int Available { get; }

    /// <summary>From now on only blocking operations on dedicated threads use the connection.</summary>
    void EnterKernelBlockingMode();

    /// <summary>Caps the kernel's send and receive buffers (0 leaves one as it is).</summary>
    void LimitKernelBuffers(int send, int receive);
}
