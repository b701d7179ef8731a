using System.Net;
using System.Net.Sockets;

namespace Ferry.Migration.Transport;

/// <summary>
/// Migration connections over TCP: each is a <see cref="SocketConnectionStream"/>, so that the
/// fault connection can switch to blocking system calls after the switchover.
/// </summary>
/// <param name="faultSocketPriority">SO_PRIORITY of a connection's packets once it carries the fault path (see <see cref="SocketConnectionStream"/>).</param>
public sealed class TcpTransport(int faultSocketPriority = 6) : MigrationTransport
{
    public static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(10);

    public override async Task<Stream> ConnectAsync(string endpoint, CancellationToken cancellation)
    {
        (string host, int port) = ParseEndpoint(endpoint);
        var client = new TcpClient { NoDelay = true };
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        timeout.CancelAfter(ConnectTimeout);
        try
        {
            await client.ConnectAsync(host, port, timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellation.IsCancellationRequested)
        {
            client.Dispose();
            throw new SocketException((int)SocketError.TimedOut);
        }
        catch
        {
            client.Dispose();
            throw;
        }

        return new SocketConnectionStream(client.Client, faultSocketPriority);
    }

    public override IConnectionListener Listen(string endpoint)
    {
        if (!IPEndPoint.TryParse(endpoint, out IPEndPoint? address))
        {
            throw new ArgumentException($"'{endpoint}' is not ADDR:PORT (example: 127.0.0.1:7700)", nameof(endpoint));
        }

        var listener = new TcpListener(address);
        listener.Start();
        return new Listener(listener, faultSocketPriority);
    }

    /// <summary>Splits "host:port" ("[v6]:port" too); throws ArgumentException if it is not one.</summary>
    public static (string Host, int Port) ParseEndpoint(string text)
    {
        int colon = text.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(text.AsSpan(colon + 1), out int port) || port is <= 0 or > 65535)
        {
            throw new ArgumentException($"'{text}' is not host:port");
        }

        return (text[..colon].Trim('[', ']'), port);
    }

    private sealed class Listener(TcpListener listener, int faultSocketPriority) : IConnectionListener
    {
        public string Endpoint { get; } = listener.LocalEndpoint.ToString()!;

        public async ValueTask<AcceptedConnection> AcceptAsync(CancellationToken cancellation)
        {
            Socket socket = await listener.AcceptSocketAsync(cancellation).ConfigureAwait(false);
            socket.NoDelay = true;
            string peer = socket.RemoteEndPoint?.ToString() ?? "?";
            return new AcceptedConnection(peer, new SocketConnectionStream(socket, faultSocketPriority));
        }

        public ValueTask DisposeAsync()
        {
            listener.Stop();
            return ValueTask.CompletedTask;
        }
    }
}
