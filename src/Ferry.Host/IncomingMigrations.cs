using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Ferry.Machine.Board;
using Ferry.Migration;
using Ferry.Migration.Protocol;
using Ferry.Migration.Transport;
using Microsoft.Extensions.Logging;

namespace Ferry.Host;

/// <summary>
/// The destination role of a host: prepared slots (one per expected VM), the TCP listener for
/// migration connections, and the pairing of each migration's main and fault connections.
/// Every connection starts with a Hello that is checked against a slot before anything else.
/// </summary>
public sealed class IncomingMigrations
{
    private readonly HostOptions _options;
    private readonly VmRegistry _vms;
    private readonly ILogger _log;
    private readonly ConcurrentDictionary<string, Prepared> _slots = new();
    private readonly ConcurrentDictionary<string, TaskCompletionSource<FrameChannel>> _faultWaiters = new();
    private readonly object _prepareLock = new();
    private TcpListener? _listener;
    private int _pending; // connections accepted and not yet past their Hello

    public IncomingMigrations(HostOptions options, VmRegistry vms, ILogger log)
    {
        _options = options;
        _vms = vms;
        _log = log;
    }

    public IPEndPoint? Endpoint => _listener?.LocalEndpoint as IPEndPoint;

    public IncomingSlot Prepare(IncomingRequest request)
    {
        if (VmName.Check(request.Name) is string badName)
        {
            throw new ApiException(400, badName);
        }

        if (request.MemoryBytes == 0 || request.MemoryBytes > _options.MaxMemoryBytes || request.MemoryBytes % 4096 != 0)
        {
            throw new ApiException(400, $"memory size {request.MemoryBytes} is not acceptable on this host (max {_options.MaxMemoryBytes >> 20} MiB)");
        }

        lock (_prepareLock)
        {
            return PrepareLocked(request);
        }
    }

    /// <summary>Incoming VMs (prepared or arriving) count against the host's caps until they complete, fail or expire.</summary>
    private IncomingSlot PrepareLocked(IncomingRequest request)
    {

        // The VM is built now, as QEMU's destination is started with -incoming before the source
        // connects: its memory and thread are ready, so the migration's setup does not pay for
        // them, and its name is reserved on this host.
        // Preparing again for the same name (a retry) replaces a slot that was never used.
        foreach ((string oldKey, Prepared old) in _slots)
        {
            if (old.Vm.Name == request.Name && _slots.TryRemove(oldKey, out _))
            {
                _vms.RemoveFailed(old.Vm);
            }
        }

        List<VmInstance> incoming = [.. _vms.All().Where(v => v.State is VmState.Incoming or VmState.Arriving)];
        if (incoming.Count >= _options.MaxIncomingVms)
        {
            throw new ApiException(429, $"this host already holds {incoming.Count} incoming VMs, its limit (ferry host --max-incoming)");
        }

        ulong reserved = incoming.Aggregate(0UL, (sum, v) => sum + v.Machine.Config.MemorySize);
        if (reserved + request.MemoryBytes > _options.MaxIncomingMemoryBytes)
        {
            throw new ApiException(429, $"{request.MemoryBytes >> 20} MiB more incoming memory would exceed this host's limit of {_options.MaxIncomingMemoryBytes >> 20} MiB ({reserved >> 20} MiB held; ferry host --max-incoming-memory)");
        }

        var slot = IncomingSlot.Create(request.Name, new MachineConfig { MemorySize = request.MemoryBytes, Icount = request.Icount }, _options.IncomingLifetime);
        var vm = new VmInstance(request.Name, new VirtMachine(slot.Config), null, VmState.Incoming, _options.Name);
        if (!_vms.TryAdd(vm))
        {
            vm.Dispose();
            throw new ApiException(409, $"a VM named '{request.Name}' already exists on this host");
        }

        vm.PrepareToRun();
        string key = Convert.ToHexString(slot.Token);
        _slots[key] = new Prepared(slot, vm);
        _ = ExpireAsync(key, _options.IncomingLifetime);
        return slot;
    }

    /// <summary>A slot nobody used: free the VM it holds.</summary>
    private async Task ExpireAsync(string key, TimeSpan lifetime)
    {
        await Task.Delay(lifetime).ConfigureAwait(false);
        if (_slots.TryRemove(key, out Prepared? unused))
        {
            _log.LogInformation("incoming slot for {Vm} expired unused", unused.Vm.Name);
            _vms.RemoveFailed(unused.Vm);
        }
    }

    private sealed record Prepared(IncomingSlot Slot, VmInstance Vm);

    public void Start(CancellationToken stopping)
    {
        _listener = new TcpListener(_options.DataEndpoint);
        _listener.Start();
        _ = AcceptLoopAsync(stopping);
    }

    public void Stop() => _listener?.Stop();

    private async Task AcceptLoopAsync(CancellationToken stopping)
    {
        while (!stopping.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await _listener!.AcceptTcpClientAsync(stopping).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }

            client.NoDelay = true;
            if (Interlocked.Increment(ref _pending) > _options.MaxPendingConnections)
            {
                Interlocked.Decrement(ref _pending);
                _log.LogWarning("refused a migration connection from {Peer}: {Pending} connections are already waiting for their Hello (limit {Limit})",
                    Peer(client), _options.MaxPendingConnections, _options.MaxPendingConnections);
                client.Client.Close(0); // a reset: nothing was read, nothing is held
                client.Dispose();
                continue;
            }

            _ = HandleAsync(client, stopping);
        }
    }

    private static string Peer(TcpClient client)
    {
        try
        {
            return client.Client.RemoteEndPoint?.ToString() ?? "an unknown peer";
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            return "an unknown peer";
        }
    }

    private async Task HandleAsync(TcpClient client, CancellationToken stopping)
    {
        string peer = Peer(client);
        var channel = new FrameChannel(new SocketConnectionStream(client.Client, _options.FaultSocketPriority));
        Hello hello;
        try
        {
            hello = await MigrationAcceptor.ReadHelloAsync(channel, stopping, _options.HandshakeTimeout).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            Interlocked.Decrement(ref _pending);
            if (e is ProtocolException)
            {
                await RefuseAndCloseAsync(channel, peer, e.Message).ConfigureAwait(false);
            }
            else
            {
                _log.LogWarning("refused a migration connection from {Peer}: {Reason}", peer, e.Message);
                await channel.DisposeAsync().ConfigureAwait(false);
            }

            return;
        }

        Interlocked.Decrement(ref _pending);

        string key = Convert.ToHexString(hello.Token);
        if (hello.Role == ConnectionRole.Fault)
        {
            if (_faultWaiters.TryRemove(key, out TaskCompletionSource<FrameChannel>? waiter))
            {
                await MigrationAcceptor.AcceptAsync(channel, stopping).ConfigureAwait(false);
                waiter.TrySetResult(channel);
            }
            else
            {
                await RefuseAndCloseAsync(channel, peer, "no migration is waiting for this fault connection").ConfigureAwait(false);
            }

            return;
        }

        // A slot serves one attempt: the first main Hello with its token consumes it.
        if (!_slots.TryRemove(key, out Prepared? prepared))
        {
            await RefuseAndCloseAsync(channel, peer, "unknown or expired migration token (prepare the destination first)").ConfigureAwait(false);
            return;
        }

        string? error = prepared.Slot.Validate(hello);
        if (error is not null)
        {
            _vms.RemoveFailed(prepared.Vm);
            await RefuseAndCloseAsync(channel, peer, $"incoming migration of {hello.VmName}: {error}").ConfigureAwait(false);
            return;
        }

        VmInstance vm = prepared.Vm;
        using MachineLease? lease = vm.TryLease();
        if (lease is null)
        {
            await RefuseAndCloseAsync(channel, peer, $"the VM '{hello.VmName}' prepared for this migration was removed").ConfigureAwait(false);
            return;
        }

        vm.AssignStopAt(hello.StopAt == ulong.MaxValue ? null : hello.StopAt);
        var fault = new TaskCompletionSource<FrameChannel>(TaskCreationOptions.RunContinuationsAsynchronously);
        _faultWaiters[key] = fault;
        await MigrationAcceptor.AcceptAsync(channel, stopping).ConfigureAwait(false);
        _log.LogInformation("incoming migration of {Vm} ({Strategy}) from {Peer}", hello.VmName, hello.Strategy, peer);
        var migration = new DestinationMigration(hello, vm, channel, fault.Task);
        try
        {
            await migration.RunAsync(stopping).ConfigureAwait(false);
            _log.LogInformation("incoming migration of {Vm} complete; {Faults} network faults", hello.VmName, migration.NetworkFaults);
        }
        catch (Exception e)
        {
            _log.LogWarning("incoming migration of {Vm} failed: {Reason}", hello.VmName, e.Message);
            if (vm.State is VmState.Failed or VmState.Incoming)
            {
                _vms.RemoveFailed(vm); // never a VM that completed here: it is this host's now
            }
        }
        finally
        {
            _faultWaiters.TryRemove(key, out _);
            await channel.DisposeAsync().ConfigureAwait(false);
            if (fault.Task.IsCompletedSuccessfully)
            {
                await fault.Task.Result.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    /// <summary>Logs the refusal with the peer and its reason, tells the peer, and closes the connection.</summary>
    private async Task RefuseAndCloseAsync(FrameChannel channel, string peer, string reason)
    {
        _log.LogWarning("refused a migration connection from {Peer}: {Reason}", peer, reason);
        await MigrationAcceptor.RefuseAsync(channel, reason).ConfigureAwait(false);
        await channel.DisposeAsync().ConfigureAwait(false);
    }
}

/// <summary>An API error with its HTTP status.</summary>
public sealed class ApiException(int status, string message) : Exception(message)
{
    public int Status { get; } = status;
}
