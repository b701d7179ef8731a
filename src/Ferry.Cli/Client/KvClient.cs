using System.Buffers.Text;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Ferry.Cli.Client;

/// <summary>What a <see cref="KvClient"/> run does.</summary>
/// <param name="Target">The kvserver's address (the Linux guest's 10.77.0.2:7000).</param>
/// <param name="Rate">Requests per second over all connections, spread evenly (connection i sends the requests i, i+C, i+2C, ...).</param>
/// <param name="Connections">TCP connections, opened once at the start and never reopened.</param>
/// <param name="Duration">How long requests are sent; <see cref="KvClient.RunAsync"/> may stop earlier.</param>
public sealed record KvClientOptions(EndPoint Target, double Rate, int Connections, TimeSpan Duration)
{
    /// <summary>Every how many requests one is a PUT (the others are GETs): 10 = one in ten.</summary>
    public int PutEvery { get; init; } = 10;

    /// <summary>Distinct keys per connection.</summary>
    public int KeysPerConnection { get; init; } = 64;

    /// <summary>After the last request is sent, how long replies are still awaited; one not in by then failed.</summary>
    public TimeSpan DrainTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>How long opening the connections may take.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(5);

    public void Validate()
    {
        if (!double.IsFinite(Rate) || Rate <= 0 || Rate > 1_000_000)
        {
            throw new ArgumentException($"the rate must be between 0 and 1,000,000 requests per second, not {Rate}");
        }

        if (Connections is < 1 or > 1024)
        {
            throw new ArgumentException($"connections must be between 1 and 1024, not {Connections}");
        }

        if (Duration <= TimeSpan.Zero || Duration > TimeSpan.FromDays(1))
        {
            throw new ArgumentException($"the duration must be between 0 and 24 hours, not {Duration}");
        }

        if ((long)Math.Ceiling(Rate * Duration.TotalSeconds) > 100_000_000)
        {
            throw new ArgumentException("rate x duration is over 100 million requests (every one is recorded)");
        }

        if (PutEvery < 1 || KeysPerConnection < 1)
        {
            throw new ArgumentException("PutEvery and KeysPerConnection must be positive");
        }
    }
}

/// <summary>
/// The host's client of the guest's kvserver (issue 12): sends GET and PUT requests at a steady
/// rate, open loop, and records every request's latency.
/// </summary>
/// <remarks>
/// <para>Open loop: request n is due at <c>n / Rate</c> seconds from the start whatever happened to
/// the earlier ones, so while the server does not answer (the VM moving) requests keep going out
/// and queue in the network; the outage shows as their latency and as a gap in the replies, not
/// as fewer requests. Each connection has a sender (waits for each of its requests' due time,
/// then writes it) and a reader (replies come in request order on a connection, so each line
/// answers the oldest outstanding request).</para>
/// <para>Latency is from the moment the request was written to the socket to the moment its reply
/// was read. A sender that falls behind its schedule (a full socket buffer, a late timer) is
/// visible as <see cref="KvSample.LatenessMs"/>.</para>
/// <para>Every reply is checked: each connection uses its own keys (prefixed by a per-run tag), so
/// a GET must return exactly the value of that connection's last PUT of the key (or MISSING when
/// there was none): a store that lost or mixed up writes across the move fails requests.</para>
/// <para>A failed request: an ERROR or wrong reply, a reply not in within <see
/// cref="KvClientOptions.DrainTimeout"/> after the last send, or its connection broken (every
/// request outstanding or due on a broken connection fails: there is no reconnect).</para>
/// </remarks>
public sealed class KvClient
{
    private readonly KvClientOptions _options;
    private readonly KvSample[] _samples;
    private readonly string _tag;
    private long _startTicks;

    private KvClient(KvClientOptions options)
    {
        _options = options;
        _samples = new KvSample[(int)Math.Ceiling(options.Rate * options.Duration.TotalSeconds)];
        _tag = Convert.ToHexStringLower(BitConverter.GetBytes(Random.Shared.Next()))[..6];
    }

    /// <summary>
    /// Connects, sends for <see cref="KvClientOptions.Duration"/> (or until <paramref name="stop"/>),
    /// awaits the last replies and returns every request. Connection failures after the start are
    /// recorded as failed requests; failing to connect at the start throws <see cref="IOException"/>
    /// (or <see cref="TimeoutException"/>). Cancelling <paramref name="ct"/> throws.
    /// </summary>
    public static async Task<KvClientResult> RunAsync(KvClientOptions options, CancellationToken stop, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var client = new KvClient(options);
        return await client.ExecuteAsync(stop, ct);
    }

    /// <inheritdoc cref="RunAsync(KvClientOptions, CancellationToken, CancellationToken)"/>
    public static Task<KvClientResult> RunAsync(KvClientOptions options, CancellationToken ct) => RunAsync(options, CancellationToken.None, ct);

    private async Task<KvClientResult> ExecuteAsync(CancellationToken stop, CancellationToken ct)
    {
        var sockets = new Socket[_options.Connections];
        try
        {
            using (var connectTimeout = CancellationTokenSource.CreateLinkedTokenSource(ct))
            {
                connectTimeout.CancelAfter(_options.ConnectTimeout);
                for (int i = 0; i < sockets.Length; i++)
                {
                    sockets[i] = new Socket(_options.Target.AddressFamily == AddressFamily.Unspecified ? AddressFamily.InterNetwork : _options.Target.AddressFamily,
                        SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                    try
                    {
                        await sockets[i].ConnectAsync(_options.Target, connectTimeout.Token);
                    }
                    catch (OperationCanceledException) when (!ct.IsCancellationRequested)
                    {
                        throw new TimeoutException($"could not connect to {_options.Target} within {_options.ConnectTimeout.TotalSeconds:0.#} s");
                    }
                    catch (SocketException e)
                    {
                        throw new IOException($"could not connect to {_options.Target}: {e.Message}", e);
                    }
                }
            }

            DateTimeOffset startedAt = DateTimeOffset.UtcNow;
            _startTicks = Stopwatch.GetTimestamp();
            var connections = new Connection[sockets.Length];
            var tasks = new List<Task>();
            for (int i = 0; i < sockets.Length; i++)
            {
                connections[i] = new Connection(this, i, sockets[i]);
                tasks.Add(connections[i].RunAsync(stop, ct));
            }

            await Task.WhenAll(tasks);
            ct.ThrowIfCancellationRequested();
            // The requests sent, in schedule order (a stop ends each connection's sending at its own point).
            var sent = new List<KvSample>();
            for (int i = 0; i < _samples.Length; i++)
            {
                if (i <= connections[i % connections.Length].LastIndex)
                {
                    sent.Add(_samples[i]);
                }
            }

            return new KvClientResult(_options, startedAt, [.. sent], connections.Count(c => c.Broken));
        }
        finally
        {
            foreach (Socket? s in sockets)
            {
                s?.Dispose();
            }
        }
    }

    private double MsSinceStart(long ticks) => (ticks - _startTicks) * 1000.0 / Stopwatch.Frequency;

    private long DueTicks(int index) => _startTicks + (long)(index / _options.Rate * Stopwatch.Frequency);

    /// <summary>One connection: its sender, its reader, its outstanding requests in order.</summary>
    private sealed class Connection(KvClient client, int id, Socket socket)
    {
        private readonly Queue<int> _outstanding = new();
        private readonly Lock _gate = new();
        private readonly string[] _lastPut = new string[client._options.KeysPerConnection];
        private readonly Queue<string> _expected = new();
        private readonly TaskCompletionSource _allAnswered = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private bool _sendingDone;
        private volatile bool _closing;
        private string? _brokenReason;

        public int LastIndex { get; private set; } = -1;

        public bool Broken => _brokenReason is not null;

        public async Task RunAsync(CancellationToken stop, CancellationToken ct)
        {
            Task reader = ReadAsync(ct);
            await SendAsync(stop, ct);
            lock (_gate)
            {
                _sendingDone = true;
                if (_outstanding.Count == 0)
                {
                    _allAnswered.TrySetResult();
                }
            }

            // Wait for the replies to what was sent, at most the drain timeout.
            if (await Task.WhenAny(_allAnswered.Task, Task.Delay(client._options.DrainTimeout, ct)) != _allAnswered.Task)
            {
                FailOutstanding($"no reply within {client._options.DrainTimeout.TotalSeconds:0.#} s after the last request");
            }

            ct.ThrowIfCancellationRequested();
            _closing = true;
            try
            {
                socket.Shutdown(SocketShutdown.Both);
            }
            catch (SocketException)
            {
                // already broken
            }

            await reader;
        }

        private async Task SendAsync(CancellationToken stop, CancellationToken ct)
        {
            KvClientOptions o = client._options;
            byte[] buffer = new byte[256];
            for (int index = id; index < client._samples.Length; index += o.Connections)
            {
                long due = client.DueTicks(index);
                long now = Stopwatch.GetTimestamp();
                if (due > now)
                {
                    try
                    {
                        await Task.Delay(TimeSpan.FromTicks((due - now) * TimeSpan.TicksPerSecond / Stopwatch.Frequency), stop).WaitAsync(ct);
                    }
                    catch (OperationCanceledException) when (stop.IsCancellationRequested && !ct.IsCancellationRequested)
                    {
                        return;
                    }
                }

                if (stop.IsCancellationRequested)
                {
                    return;
                }

                int n = index / o.Connections;          // this connection's n-th request
                int key = n % o.KeysPerConnection;
                bool put = n % o.PutEvery == 0;
                string value = put ? "v" + n.ToString(System.Globalization.CultureInfo.InvariantCulture) : "";
                int length = Format(buffer, put, key, value);
                long sentAt = Stopwatch.GetTimestamp();
                client._samples[index] = new KvSample(client.MsSinceStart(due), client.MsSinceStart(sentAt), double.NaN, id, put ? KvRequestKind.Put : KvRequestKind.Get, null);
                LastIndex = index;
                string? expect;
                lock (_gate)
                {
                    if (_brokenReason is not null)
                    {
                        client._samples[index] = client._samples[index] with { Error = _brokenReason };
                        continue;
                    }

                    // The reply each request should get, checked by the reader.
                    expect = put ? "OK" : _lastPut[key] is { } v ? $"VALUE {KeyName(key)} {v}" : $"MISSING {KeyName(key)}";
                    if (put)
                    {
                        _lastPut[key] = value;
                    }

                    _outstanding.Enqueue(index);
                    _expected.Enqueue(expect);
                }

                try
                {
                    await socket.SendAsync(buffer.AsMemory(0, length), SocketFlags.None, ct);
                }
                catch (SocketException e)
                {
                    Break($"connection {id} broken while sending: {e.SocketErrorCode}");
                }
            }
        }

        private string KeyName(int key) => $"{client._tag}c{id}k{key}";

        private int Format(byte[] buffer, bool put, int key, string value)
        {
            string line = put ? $"PUT {KeyName(key)} {value}\n" : $"GET {KeyName(key)}\n";
            return Encoding.ASCII.GetBytes(line, buffer);
        }

        private async Task ReadAsync(CancellationToken ct)
        {
            byte[] buffer = new byte[16384];
            int have = 0;
            while (true)
            {
                int n;
                try
                {
                    n = await socket.ReceiveAsync(buffer.AsMemory(have), SocketFlags.None, ct);
                }
                catch (SocketException e)
                {
                    if (!_closing)
                    {
                        Break($"connection {id} broken: {e.SocketErrorCode}");
                    }

                    return;
                }
                catch (OperationCanceledException)
                {
                    return;
                }

                long at = Stopwatch.GetTimestamp();
                if (n == 0)
                {
                    if (!_closing)
                    {
                        Break($"connection {id} closed by the server");
                    }

                    return;
                }

                have += n;
                int start = 0;
                for (int i = 0; i < have; i++)
                {
                    if (buffer[i] != (byte)'\n')
                    {
                        continue;
                    }

                    Answer(Encoding.ASCII.GetString(buffer, start, i - start), at);
                    start = i + 1;
                }

                Buffer.BlockCopy(buffer, start, buffer, 0, have - start);
                have -= start;
                if (have == buffer.Length)
                {
                    Break($"connection {id}: a reply line longer than {buffer.Length} bytes");
                    return;
                }
            }
        }

        private void Answer(string reply, long at)
        {
            int index;
            string expect;
            lock (_gate)
            {
                if (!_outstanding.TryDequeue(out index))
                {
                    _brokenReason ??= $"connection {id}: a reply to no request ('{Truncate(reply)}')";
                    return;
                }

                expect = _expected.Dequeue();
                if (_sendingDone && _outstanding.Count == 0)
                {
                    _allAnswered.TrySetResult();
                }
            }

            ref KvSample s = ref client._samples[index];
            s = s with
            {
                LatencyMs = client.MsSinceStart(at) - s.SentMs,
                Error = reply == expect ? null : $"expected '{Truncate(expect)}', got '{Truncate(reply)}'",
            };
        }

        private void Break(string reason)
        {
            lock (_gate)
            {
                _brokenReason ??= reason;
            }

            FailOutstanding(reason);
        }

        private void FailOutstanding(string reason)
        {
            lock (_gate)
            {
                while (_outstanding.TryDequeue(out int index))
                {
                    _expected.Dequeue();
                    client._samples[index] = client._samples[index] with { LatencyMs = double.NaN, Error = reason };
                }

                _allAnswered.TrySetResult();   // nothing more will come on this connection
            }
        }

        private static string Truncate(string s) => s.Length <= 80 ? s : s[..80] + "...";
    }
}

public enum KvRequestKind : byte
{
    Get,
    Put,
}

/// <summary>
/// One request. Times are milliseconds from the run's start (<see cref="KvClientResult.StartedAt"/>).
/// </summary>
/// <param name="DueMs">When the schedule said to send it.</param>
/// <param name="SentMs">When it was written to the socket.</param>
/// <param name="LatencyMs">From <paramref name="SentMs"/> to its reply; NaN when it got none.</param>
/// <param name="Connection">Which connection carried it.</param>
/// <param name="Error">Why it failed (a wrong or ERROR reply, no reply, a broken connection); null when it succeeded.</param>
public readonly record struct KvSample(double DueMs, double SentMs, double LatencyMs, int Connection, KvRequestKind Kind, string? Error)
{
    public bool Failed => Error is not null;

    public bool Answered => !double.IsNaN(LatencyMs);

    /// <summary>When its reply arrived (NaN when none did).</summary>
    public double RepliedMs => SentMs + LatencyMs;

    public double LatenessMs => SentMs - DueMs;
}
