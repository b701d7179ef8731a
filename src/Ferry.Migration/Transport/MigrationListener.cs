using System.Security.Cryptography;
using Ferry.Migration.Protocol;

namespace Ferry.Migration.Transport;

/// <summary>
/// The destination's side of connection set-up, for hosts and local migrations alike: accepts
/// connections from a transport, runs the transport's handshake (TLS) and reads each one's
/// Hello under a deadline, pairs a migration's fault connection with its main connection by
/// token (compared in constant time), and hands each main connection to the destination's
/// handler, which accepts or refuses it. Every connection is closed when its migration ends.
/// </summary>
public sealed class MigrationListener : IAsyncDisposable
{
    private readonly IConnectionListener _connections;
    private readonly Func<IncomingMigration, CancellationToken, Task> _onMain;
    private readonly Action<string> _log;
    private readonly List<(byte[] Token, TaskCompletionSource<FrameChannel> Fault)> _faultWaiters = [];
    private readonly List<BulkChannelSet> _bulkWaiters = [];
    private readonly CancellationTokenSource _stopping = new();
    private readonly int _maxPending;
    private readonly Func<Hello, FrameChannel, string, CancellationToken, Task<bool>>? _onResume;
    private readonly TimeSpan _handshakeTimeout;
    private readonly HashSet<Task> _handlers = [];
    private Task _acceptLoop = Task.CompletedTask;
    private int _pending; // connections accepted and not yet past their Hello

    /// <param name="onMain">Runs one migration from its main connection: it must call <see cref="IncomingMigration.AcceptAsync"/> or <see cref="IncomingMigration.RefuseAsync"/>.</param>
    /// <param name="log">Where refused connections are reported (peer and reason).</param>
    /// <param name="maxPending">Connections that may wait for their Hello at once (the transport's handshake included); more are closed at accept, unread.</param>
    /// <param name="handshakeTimeout">How long a connection has for the transport's handshake and, again, for its Hello.</param>
    /// <param name="onResume">A connection whose Hello resumes a migration after a lost link (main or fault, with the peer's address): true if the migration took it; else it is closed.</param>
    public MigrationListener(IConnectionListener connections, Func<IncomingMigration, CancellationToken, Task> onMain, Action<string>? log = null,
        int maxPending = int.MaxValue, TimeSpan? handshakeTimeout = null, Func<Hello, FrameChannel, string, CancellationToken, Task<bool>>? onResume = null)
    {
        _onResume = onResume;
        _connections = connections;
        _onMain = onMain;
        _log = log ?? (_ => { });
        _maxPending = maxPending;
        _handshakeTimeout = handshakeTimeout ?? MigrationAcceptor.DefaultHandshakeTimeout;
    }

    /// <summary>The endpoint sources dial.</summary>
    public string Endpoint => _connections.Endpoint;

    public void Start(CancellationToken stopping)
    {
        CancellationToken token = CancellationTokenSource.CreateLinkedTokenSource(stopping, _stopping.Token).Token;
        _acceptLoop = AcceptLoopAsync(token);
    }

    /// <summary>
    /// Stops accepting, then waits (up to <see cref="HandlerDrainTimeout"/>) for the connections
    /// being handled to end, so that every refusal they make is logged before disposal returns.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        _stopping.Cancel();
        await _connections.DisposeAsync().ConfigureAwait(false);
        await _acceptLoop.ConfigureAwait(false);
        Task[] handlers;
        lock (_handlers)
        {
            handlers = [.. _handlers];
        }

        await Task.WhenAny(Task.WhenAll(handlers), Task.Delay(HandlerDrainTimeout)).ConfigureAwait(false);
    }

    /// <summary>How long disposal waits for the connections still being handled.</summary>
    public static TimeSpan HandlerDrainTimeout { get; } = TimeSpan.FromSeconds(2);

    private async Task AcceptLoopAsync(CancellationToken stopping)
    {
        while (!stopping.IsCancellationRequested)
        {
            AcceptedConnection connection;
            try
            {
                connection = await _connections.AcceptAsync(stopping).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or System.Net.Sockets.SocketException)
            {
                return;
            }

            if (Interlocked.Increment(ref _pending) > _maxPending)
            {
                Interlocked.Decrement(ref _pending);
                _log($"refused a migration connection from {connection.Peer}: {_maxPending} connections are already waiting for their Hello (limit {_maxPending})");
                await connection.Stream.DisposeAsync().ConfigureAwait(false); // nothing was read, nothing is held
                continue;
            }

            Task handler = Task.Run(() => HandleAsync(connection, stopping), CancellationToken.None);
            lock (_handlers)
            {
                _handlers.Add(handler);
            }

            _ = handler.ContinueWith(
                (t, state) =>
                {
                    var set = (HashSet<Task>)state!;
                    lock (set)
                    {
                        set.Remove(t);
                    }
                },
                _handlers, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
    }

    private async Task HandleAsync(AcceptedConnection connection, CancellationToken stopping)
    {
        FrameChannel channel;
        Hello hello;
        Task<Stream> open = connection.OpenAsync(stopping);
        try
        {
            channel = new FrameChannel(await open.WaitAsync(_handshakeTimeout, stopping).ConfigureAwait(false));
        }
        catch (Exception e)
        {
            Interlocked.Decrement(ref _pending);
            if (e is OperationCanceledException)
            {
                // Stopping while the handshake refuses its peer (an in-process pair torn down once
                // the source has read the refusal): the refusal's reason, not the stop, is the news.
                await Task.WhenAny(open, Task.Delay(200, CancellationToken.None)).ConfigureAwait(false);
                e = open.IsFaulted ? open.Exception!.GetBaseException() : e;
            }

            _log($"refused a migration connection from {connection.Peer}: {(e is TimeoutException ? "no transport handshake within the deadline" : e.Message)}");
            await connection.Stream.DisposeAsync().ConfigureAwait(false);
            return;
        }

        try
        {
            hello = await MigrationAcceptor.ReadHelloAsync(channel, stopping, _handshakeTimeout).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            Interlocked.Decrement(ref _pending);
            _log($"refused a migration connection from {connection.Peer}: {(e is TimeoutException ? "no Hello within the deadline" : e.Message)}");
            if (e is ProtocolException or TimeoutException)
            {
                await MigrationAcceptor.RefuseAsync(channel, e is TimeoutException ? "no Hello within the deadline" : e.Message).ConfigureAwait(false);
            }

            await channel.DisposeAsync().ConfigureAwait(false);
            return;
        }

        Interlocked.Decrement(ref _pending);

        if (hello.Resume)
        {
            bool taken = false;
            try
            {
                taken = _onResume is not null && await _onResume(hello, channel, connection.Peer, stopping).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                _log($"a resuming connection from {connection.Peer} failed: {e.Message}");
            }

            if (!taken)
            {
                await channel.DisposeAsync().ConfigureAwait(false);
            }

            return;
        }

        if (hello.Role == ConnectionRole.Fault)
        {
            TaskCompletionSource<FrameChannel>? waiter = TakeFaultWaiter(hello.Token);
            if (waiter is null)
            {
                _log($"refused a fault connection from {connection.Peer}: no migration is waiting for it");
                await MigrationAcceptor.RefuseAsync(channel, "no migration is waiting for this fault connection").ConfigureAwait(false);
                await channel.DisposeAsync().ConfigureAwait(false);
                return;
            }

            await MigrationAcceptor.AcceptAsync(channel, stopping).ConfigureAwait(false);
            if (!waiter.TrySetResult(channel))
            {
                await channel.DisposeAsync().ConfigureAwait(false); // the migration ended meanwhile
            }

            return;
        }

        if (hello.Role == ConnectionRole.Bulk)
        {
            string? refusal = AddBulk(hello, channel);
            if (refusal is not null)
            {
                _log($"refused a bulk connection from {connection.Peer}: {refusal}");
                await MigrationAcceptor.RefuseAsync(channel, refusal).ConfigureAwait(false);
                await channel.DisposeAsync().ConfigureAwait(false);
                return;
            }

            await MigrationAcceptor.AcceptAsync(channel, stopping).ConfigureAwait(false);
            return; // the migration owns it now, and closes it when it ends
        }

        var incoming = new IncomingMigration(this, hello, channel, connection.Peer);
        try
        {
            await _onMain(incoming, stopping).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            _log($"incoming migration from {connection.Peer} failed: {e.Message}");
        }
        finally
        {
            RemoveFaultWaiter(incoming.FaultSource);
            incoming.FaultSource.TrySetCanceled(CancellationToken.None);
            if (incoming.BulkSet is BulkChannelSet bulk)
            {
                lock (_bulkWaiters)
                {
                    _bulkWaiters.Remove(bulk);
                }

                await bulk.CloseAsync().ConfigureAwait(false);
            }

            await channel.DisposeAsync().ConfigureAwait(false);
            if (incoming.FaultSource.Task.IsCompletedSuccessfully)
            {
                await incoming.FaultSource.Task.Result.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    internal void AddFaultWaiter(byte[] token, TaskCompletionSource<FrameChannel> fault)
    {
        lock (_faultWaiters)
        {
            _faultWaiters.Add((token, fault));
        }
    }

    internal void AddBulkWaiter(BulkChannelSet bulk)
    {
        lock (_bulkWaiters)
        {
            _bulkWaiters.Add(bulk);
        }
    }

    /// <summary>Gives a bulk connection to the migration whose token it carries; the reason it is refused, or null.</summary>
    private string? AddBulk(Hello hello, FrameChannel channel)
    {
        BulkChannelSet? found = null;
        lock (_bulkWaiters)
        {
            foreach (BulkChannelSet set in _bulkWaiters)
            {
                // Every entry is compared, in constant time, so the time taken says nothing of a token.
                if (set.Matches(hello.Token))
                {
                    found = set;
                }
            }
        }

        if (found is null)
        {
            return "no migration is waiting for this bulk connection";
        }

        string? refusal = found.TryAdd(hello, channel);
        if (refusal is not null)
        {
            found.Fail(refusal);
        }

        return refusal;
    }

    private TaskCompletionSource<FrameChannel>? TakeFaultWaiter(byte[] token)
    {
        lock (_faultWaiters)
        {
            int found = -1;
            for (int i = 0; i < _faultWaiters.Count; i++)
            {
                // Every entry is compared, in constant time, so the time taken says nothing of a token.
                if (CryptographicOperations.FixedTimeEquals(_faultWaiters[i].Token, token))
                {
                    found = i;
                }
            }

            if (found < 0)
            {
                return null;
            }

            TaskCompletionSource<FrameChannel> waiter = _faultWaiters[found].Fault;
            _faultWaiters.RemoveAt(found);
            return waiter;
        }
    }

    private void RemoveFaultWaiter(TaskCompletionSource<FrameChannel> fault)
    {
        lock (_faultWaiters)
        {
            _faultWaiters.RemoveAll(w => w.Fault == fault);
        }
    }
}

/// <summary>A migration's main connection, its Hello read: the destination accepts or refuses it.</summary>
public sealed class IncomingMigration
{
    private readonly MigrationListener _listener;

    internal IncomingMigration(MigrationListener listener, Hello hello, FrameChannel main, string peer)
    {
        _listener = listener;
        Hello = hello;
        Main = main;
        Peer = peer;
    }

    public Hello Hello { get; }

    public FrameChannel Main { get; }

    public string Peer { get; }

    internal TaskCompletionSource<FrameChannel> FaultSource { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>The fault connection, once the source has opened it (after <see cref="AcceptAsync"/>).</summary>
    public Task<FrameChannel> Fault => FaultSource.Task;

    /// <summary>This migration's bulk connections, when its Hello asked for N ≥ 2 (from <see cref="AcceptAsync"/> on).</summary>
    internal BulkChannelSet? BulkSet { get; private set; }

    /// <summary>
    /// The bulk connections, in index order, once all the Hello announced have arrived (empty
    /// when the bulk pages share the main connection).
    /// </summary>
    public Task<FrameChannel[]> Bulk => BulkSet?.All ?? Task.FromResult<FrameChannel[]>([]);

    /// <summary>Welcomes the source; from now on its fault connection (and its bulk connections) are expected.</summary>
    public ValueTask AcceptAsync(CancellationToken cancellation)
    {
        if (Hello.Channels > 1 && BulkSet is null)
        {
            BulkSet = new BulkChannelSet(Hello.Token, Hello.Channels);
            _listener.AddBulkWaiter(BulkSet);
        }

        _listener.AddFaultWaiter(Hello.Token, FaultSource);
        return MigrationAcceptor.AcceptAsync(Main, cancellation);
    }

    public Task RefuseAsync(string reason) => MigrationAcceptor.RefuseAsync(Main, reason);
}
