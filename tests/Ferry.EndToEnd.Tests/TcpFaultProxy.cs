using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Ferry.EndToEnd.Tests;

/// <summary>What <see cref="TcpFaultProxy"/> does to its first connection once the trigger fires.</summary>
public enum ProxyFault
{
    /// <summary>A reset both ways (RST: linger 0), as a crashed peer host or a dead middlebox.</summary>
    Cut,

    /// <summary>Nothing more crosses either way and nothing fails (a black hole: a dead link without a reset).</summary>
    Stall,

    /// <summary>One byte of what the source sends is flipped (the byte at the trigger), as a link that corrupts would.</summary>
    Corrupt,
}

/// <summary>
/// A TCP proxy between a source host agent and a destination's data endpoint, in the test
/// process: the source dials the proxy, the proxy dials the destination, and bytes are pumped
/// both ways. The first connection (the migration's main connection: the source opens it first)
/// fails as <see cref="ProxyFault"/> says once <paramref name="afterBytes"/> bytes have gone from
/// the source to the destination on it; every later connection (the fault connection, and the
/// reconnections of a recovery) passes untouched.
/// </summary>
internal sealed class TcpFaultProxy : IAsyncDisposable
{
    private readonly TcpListener _listener;
    private readonly IPEndPoint _target;
    private readonly ProxyFault _fault;
    private readonly long _afterBytes;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Socket> _sockets = [];
    private readonly Task _accepting;
    private int _connections;
    private long _firedAt;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, long> _bytes = new();

    public TcpFaultProxy(string target, ProxyFault fault, long afterBytes)
    {
        _target = IPEndPoint.Parse(target);
        _fault = fault;
        _afterBytes = afterBytes;
        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start();
        _accepting = AcceptAsync();
    }

    /// <summary>The address the source must dial (host:port).</summary>
    public string Endpoint => $"127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}";

    /// <summary>Stopwatch ticks when the fault fired (0: not yet).</summary>
    public long FiredAt => Interlocked.Read(ref _firedAt);

    public bool Fired => FiredAt != 0;

    /// <summary>Connections accepted so far.</summary>
    public int Connections => Volatile.Read(ref _connections);

    private async Task AcceptAsync()
    {
        try
        {
            while (true)
            {
                Socket client = await _listener.AcceptSocketAsync(_stop.Token);
                var server = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                client.NoDelay = true;
                lock (_sockets)
                {
                    _sockets.Add(client);
                    _sockets.Add(server);
                }

                bool faulty = Interlocked.Increment(ref _connections) == 1;
                try
                {
                    await server.ConnectAsync(_target, _stop.Token);
                }
                catch (SocketException)
                {
                    client.Close(0);
                    continue;
                }

                var stalled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                int index = Connections;
                _ = PumpAsync(client, server, faulty, stalled, $"#{index} to destination");
                _ = PumpAsync(server, client, false, stalled, $"#{index} to source");
            }
        }
        catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
        {
        }
    }

    /// <summary>Copies <paramref name="from"/> to <paramref name="to"/>; on the faulty direction, applies the fault at the trigger.</summary>
    private async Task PumpAsync(Socket from, Socket to, bool faulty, TaskCompletionSource stalled, string label)
    {
        byte[] buffer = new byte[64 * 1024];
        long sent = 0;
        try
        {
            while (true)
            {
                int n = await from.ReceiveAsync(buffer, SocketFlags.None, _stop.Token);
                if (n == 0)
                {
                    to.Shutdown(SocketShutdown.Send);
                    return;
                }

                if (stalled.Task.IsCompleted)
                {
                    await Task.Delay(Timeout.Infinite, _stop.Token); // a black hole: read, never forward
                }

                int pass = n;
                bool fire = faulty && !Fired && sent + n > _afterBytes;
                if (fire)
                {
                    int at = (int)Math.Max(0, _afterBytes - sent);
                    Interlocked.CompareExchange(ref _firedAt, Stopwatch.GetTimestamp(), 0);
                    switch (_fault)
                    {
                        case ProxyFault.Corrupt:
                            buffer[at] ^= 0x5A;
                            break;
                        case ProxyFault.Cut:
                            await SendAllAsync(to, buffer.AsMemory(0, at));
                            from.Close(0); // linger 0: RST
                            to.Close(0);
                            return;
                        case ProxyFault.Stall:
                            pass = at;
                            stalled.TrySetResult();
                            break;
                    }
                }

                await SendAllAsync(to, buffer.AsMemory(0, pass));
                sent += pass;
                _bytes[label] = sent;
                if (stalled.Task.IsCompleted && (faulty || fire))
                {
                    await Task.Delay(Timeout.Infinite, _stop.Token);
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
        {
            if (!stalled.Task.IsCompleted)
            {
                // One side went away (not the proxy's doing): the other sees a reset too.
                from.Close(0);
                to.Close(0);
            }
        }
    }

    /// <summary>Bytes forwarded per connection and direction (for the test's output).</summary>
    public string Describe() => string.Join(", ", _bytes.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key} {p.Value:N0} B"));

    private async Task SendAllAsync(Socket to, ReadOnlyMemory<byte> data)
    {
        while (!data.IsEmpty)
        {
            int n = await to.SendAsync(data, SocketFlags.None, _stop.Token);
            data = data[n..];
        }
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Stop();
        await _accepting;
        lock (_sockets)
        {
            foreach (Socket s in _sockets)
            {
                s.Dispose();
            }
        }

        _stop.Dispose();
    }
}
