using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Ferry.Cli.Bench;

/// <summary>An asynchronous QMP event: its name, QEMU's timestamp (host wall clock) and its data.</summary>
internal sealed record QmpEvent(string Name, long Seconds, long Microseconds, JsonElement? Data)
{
    /// <summary>The timestamp in milliseconds since the Unix epoch (QMP gives seconds + microseconds).</summary>
    public double TimestampMs => Seconds * 1000.0 + Microseconds / 1000.0;

    /// <summary>The <c>status</c> of a MIGRATION event (null for other events).</summary>
    public string? Status => Data is { ValueKind: JsonValueKind.Object } d && d.TryGetProperty("status", out JsonElement s) ? s.GetString() : null;
}

/// <summary>A command that QEMU answered with an <c>error</c> object.</summary>
internal sealed class QmpException(string command, string errorClass, string description)
    : Exception($"QMP {command}: {errorClass}: {description}")
{
    public string ErrorClass { get; } = errorClass;
}

/// <summary>
/// A QEMU Machine Protocol client over a unix socket: JSON objects, one per line. A background
/// reader routes command responses to their callers (each command carries an <c>id</c> that QEMU
/// echoes back) and records asynchronous events, which callers can wait for or list.
/// </summary>
internal sealed class QmpClient : IAsyncDisposable
{
    private static readonly TimeSpan DefaultCommandTimeout = TimeSpan.FromSeconds(10);

    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private readonly ConcurrentDictionary<long, TaskCompletionSource<JsonElement>> _pending = new();
    private readonly List<QmpEvent> _events = [];
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly CancellationTokenSource _stop = new();
    private readonly string _name;
    private Task _reader = Task.CompletedTask;
    private TaskCompletionSource _eventArrived = NewSignal();
    private volatile Exception? _failure;
    private long _nextId;

    private QmpClient(string name, Socket socket)
    {
        _name = name;
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
    }

    /// <summary>Connects to <paramref name="path"/> (retrying until QEMU has created it), reads the greeting and negotiates capabilities.</summary>
    public static async Task<QmpClient> ConnectAsync(string name, string path, Func<bool> peerAlive, TimeSpan timeout, CancellationToken ct)
    {
        DateTime deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), ct);
                var client = new QmpClient(name, socket);
                try
                {
                    await client.StartAsync(deadline - DateTime.UtcNow, ct);
                    return client;
                }
                catch
                {
                    await client.DisposeAsync();
                    throw;
                }
            }
            catch (SocketException) when (DateTime.UtcNow < deadline && peerAlive())
            {
                socket.Dispose();
                await Task.Delay(20, ct);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        }
    }

    private async Task StartAsync(TimeSpan timeout, CancellationToken ct)
    {
        using var greetingTimeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        greetingTimeout.CancelAfter(timeout > TimeSpan.Zero ? timeout : TimeSpan.FromSeconds(1));
        var greeting = new TaskCompletionSource<JsonElement>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[-1] = greeting; // the greeting ({"QMP": ...}) is routed to id -1
        _reader = Task.Run(ReadLoopAsync, CancellationToken.None);
        try
        {
            await greeting.Task.WaitAsync(greetingTimeout.Token);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            throw new TimeoutException($"QMP {_name}: no greeting within {timeout.TotalSeconds:0.#}s");
        }

        await ExecuteAsync("qmp_capabilities", null, ct);
    }

    /// <summary>Runs <paramref name="command"/> and returns its <c>return</c> value; throws <see cref="QmpException"/> on an error reply.</summary>
    public async Task<JsonElement> ExecuteAsync(string command, JsonObject? arguments, CancellationToken ct, TimeSpan? timeout = null)
    {
        ObjectDisposedException.ThrowIf(_stop.IsCancellationRequested, this);
        if (_failure is not null)
        {
            throw new IOException($"QMP {_name}: connection lost ({_failure.Message})", _failure);
        }

        long id = Interlocked.Increment(ref _nextId);
        var reply = new TaskCompletionSource<JsonElement>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[id] = reply;
        try
        {
            if (_failure is not null)
            {
                // The reader failed between the check above and the registration: it will not complete this reply.
                throw new IOException($"QMP {_name}: connection lost ({_failure.Message})", _failure);
            }

            var message = new JsonObject { ["execute"] = command, ["id"] = id };
            if (arguments is not null)
            {
                message["arguments"] = arguments;
            }

            byte[] line = Encoding.UTF8.GetBytes(message.ToJsonString() + "\n");
            await _writeLock.WaitAsync(ct);
            try
            {
                await _stream.WriteAsync(line, ct);
                await _stream.FlushAsync(ct);
            }
            finally
            {
                _writeLock.Release();
            }

            TimeSpan limit = timeout ?? DefaultCommandTimeout;
            try
            {
                JsonElement response = await reply.Task.WaitAsync(limit, ct);
                if (response.TryGetProperty("error", out JsonElement error))
                {
                    throw new QmpException(command,
                        error.TryGetProperty("class", out JsonElement c) ? c.GetString() ?? "?" : "?",
                        error.TryGetProperty("desc", out JsonElement d) ? d.GetString() ?? "" : "");
                }

                return response.TryGetProperty("return", out JsonElement value) ? value : default;
            }
            catch (TimeoutException)
            {
                throw new TimeoutException($"QMP {_name}: no reply to {command} within {limit.TotalSeconds:0.#}s");
            }
        }
        finally
        {
            _pending.TryRemove(id, out _);
        }
    }

    /// <summary>All events received so far, in arrival order.</summary>
    public IReadOnlyList<QmpEvent> Events
    {
        get
        {
            lock (_events)
            {
                return [.. _events];
            }
        }
    }

    /// <summary>Waits for the first event (already received or future) matching <paramref name="match"/>; null on timeout.</summary>
    public async Task<QmpEvent?> WaitForEventAsync(Func<QmpEvent, bool> match, TimeSpan timeout, CancellationToken ct)
    {
        DateTime deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            Task signal;
            lock (_events)
            {
                foreach (QmpEvent e in _events)
                {
                    if (match(e))
                    {
                        return e;
                    }
                }

                signal = _eventArrived.Task;
            }

            TimeSpan left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero || _failure is not null)
            {
                return null;
            }

            try
            {
                await signal.WaitAsync(left, ct);
            }
            catch (TimeoutException)
            {
                return null;
            }
        }
    }

    private async Task ReadLoopAsync()
    {
        var buffer = new byte[16384];
        var line = new MemoryStream();
        try
        {
            while (true)
            {
                int n = await _stream.ReadAsync(buffer, _stop.Token);
                if (n == 0)
                {
                    throw new EndOfStreamException("QEMU closed the QMP socket");
                }

                int start = 0;
                for (int i = 0; i < n; i++)
                {
                    if (buffer[i] != (byte)'\n')
                    {
                        continue;
                    }

                    line.Write(buffer, start, i - start);
                    start = i + 1;
                    if (line.Length > 0)
                    {
                        Dispatch(line.GetBuffer().AsSpan(0, (int)line.Length));
                    }

                    line.SetLength(0);
                }

                line.Write(buffer, start, n - start);
            }
        }
        catch (Exception ex)
        {
            _failure = _stop.IsCancellationRequested ? new ObjectDisposedException(nameof(QmpClient)) : ex;
            foreach (KeyValuePair<long, TaskCompletionSource<JsonElement>> p in _pending)
            {
                p.Value.TrySetException(new IOException($"QMP {_name}: connection lost ({ex.Message})", ex));
            }

            lock (_events)
            {
                _eventArrived.TrySetResult();
            }
        }
    }

    private void Dispatch(ReadOnlySpan<byte> json)
    {
        JsonElement root;
        try
        {
            using JsonDocument doc = JsonDocument.Parse(json.ToArray());
            root = doc.RootElement.Clone();
        }
        catch (JsonException)
        {
            return; // not a QMP message; ignore
        }

        if (root.ValueKind != JsonValueKind.Object)
        {
            return;
        }

        if (root.TryGetProperty("event", out JsonElement name))
        {
            long seconds = 0, micros = 0;
            if (root.TryGetProperty("timestamp", out JsonElement ts))
            {
                seconds = ts.TryGetProperty("seconds", out JsonElement s) ? s.GetInt64() : 0;
                micros = ts.TryGetProperty("microseconds", out JsonElement u) ? u.GetInt64() : 0;
            }

            var e = new QmpEvent(name.GetString() ?? "", seconds, micros, root.TryGetProperty("data", out JsonElement data) ? data : null);
            TaskCompletionSource arrived;
            lock (_events)
            {
                _events.Add(e);
                arrived = _eventArrived;
                _eventArrived = NewSignal();
            }

            arrived.TrySetResult();
            return;
        }

        if (root.TryGetProperty("QMP", out _))
        {
            if (_pending.TryGetValue(-1, out TaskCompletionSource<JsonElement>? greeting))
            {
                greeting.TrySetResult(root);
            }

            return;
        }

        if (root.TryGetProperty("id", out JsonElement id) && id.ValueKind == JsonValueKind.Number
            && _pending.TryGetValue(id.GetInt64(), out TaskCompletionSource<JsonElement>? waiter))
        {
            waiter.TrySetResult(root);
        }
    }

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    public async ValueTask DisposeAsync()
    {
        if (_stop.IsCancellationRequested)
        {
            return;
        }

        await _stop.CancelAsync();
        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (SocketException)
        {
            // Already closed by QEMU.
        }

        await _stream.DisposeAsync();
        try
        {
            await _reader;
        }
        catch
        {
            // The reader records its own failure.
        }

        _stop.Dispose();
        _writeLock.Dispose();
    }
}
