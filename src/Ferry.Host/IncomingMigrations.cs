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
    private readonly ConcurrentDictionary<string, IncomingSlot> _slots = new();
    private readonly ConcurrentDictionary<string, TaskCompletionSource<FrameChannel>> _faultWaiters = new();
    private TcpListener? _listener;

    public IncomingMigrations(HostOptions options, VmRegistry vms, ILogger log)
    {
        _options = options;
        _vms = vms;
        _log = log;
    }

    public IPEndPoint? Endpoint => _listener?.LocalEndpoint as IPEndPoint;

    public IncomingSlot Prepare(IncomingRequest request)
    {
        if (request.MemoryBytes == 0 || request.MemoryBytes > _options.MaxMemoryBytes || request.MemoryBytes % 4096 != 0)
        {
            throw new ApiException(400, $"memory size {request.MemoryBytes} is not acceptable on this host (max {_options.MaxMemoryBytes >> 20} MiB)");
        }

        if (_vms.NameTaken(request.Name))
        {
            throw new ApiException(409, $"a VM named '{request.Name}' already exists on this host");
        }

        var slot = IncomingSlot.Create(request.Name, new MachineConfig { MemorySize = request.MemoryBytes, Icount = request.Icount }, _options.IncomingLifetime);
        _slots[Convert.ToHexString(slot.Token)] = slot;
        foreach ((string key, IncomingSlot old) in _slots)
        {
            if (old.Expires < DateTimeOffset.UtcNow)
            {
                _slots.TryRemove(key, out _);
            }
        }

        return slot;
    }

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
            _ = HandleAsync(client, stopping);
        }
    }

    private async Task HandleAsync(TcpClient client, CancellationToken stopping)
    {
        var channel = new FrameChannel(client.GetStream());
        Hello hello;
        try
        {
            hello = await MigrationAcceptor.ReadHelloAsync(channel, stopping).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            _log.LogWarning("refused a migration connection from {Peer}: {Reason}", client.Client.RemoteEndPoint, e.Message);
            if (e is ProtocolException)
            {
                await MigrationAcceptor.RefuseAsync(channel, e.Message).ConfigureAwait(false);
            }

            await channel.DisposeAsync().ConfigureAwait(false);
            return;
        }

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
                await RefuseAndCloseAsync(channel, "no migration is waiting for this fault connection").ConfigureAwait(false);
            }

            return;
        }

        if (!_slots.TryGetValue(key, out IncomingSlot? slot))
        {
            await RefuseAndCloseAsync(channel, "unknown or expired migration token (prepare the destination first)").ConfigureAwait(false);
            return;
        }

        string? error = slot.Validate(hello);
        if (error is null && _vms.NameTaken(hello.VmName))
        {
            error = $"a VM named '{hello.VmName}' already exists on the destination";
        }

        if (error is not null)
        {
            _log.LogWarning("refused incoming migration of {Vm}: {Reason}", hello.VmName, error);
            await RefuseAndCloseAsync(channel, error).ConfigureAwait(false);
            return;
        }

        _slots.TryRemove(key, out _);
        var fault = new TaskCompletionSource<FrameChannel>(TaskCreationOptions.RunContinuationsAsynchronously);
        _faultWaiters[key] = fault;
        var machine = new VirtMachine(hello.Machine);
        var vm = new VmInstance(hello.VmName, machine, hello.StopAt == ulong.MaxValue ? null : hello.StopAt, VmState.Incoming, _options.Name);
        if (!_vms.TryAdd(vm))
        {
            vm.Dispose();
            await RefuseAndCloseAsync(channel, $"a VM named '{hello.VmName}' already exists on the destination").ConfigureAwait(false);
            return;
        }

        vm.PrepareToRun();
        await MigrationAcceptor.AcceptAsync(channel, stopping).ConfigureAwait(false);
        _log.LogInformation("incoming migration of {Vm} ({Strategy}) from {Peer}", hello.VmName, hello.Strategy, client.Client.RemoteEndPoint);
        var migration = new DestinationMigration(hello, vm, channel, fault.Task);
        try
        {
            await migration.RunAsync(stopping).ConfigureAwait(false);
            _log.LogInformation("incoming migration of {Vm} complete; {Faults} network faults", hello.VmName, migration.NetworkFaults);
        }
        catch (Exception e)
        {
            _log.LogWarning("incoming migration of {Vm} failed: {Reason}", hello.VmName, e.Message);
            _vms.RemoveFailed(vm);
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

    private static async Task RefuseAndCloseAsync(FrameChannel channel, string reason)
    {
        await MigrationAcceptor.RefuseAsync(channel, reason).ConfigureAwait(false);
        await channel.DisposeAsync().ConfigureAwait(false);
    }
}

/// <summary>An API error with its HTTP status.</summary>
public sealed class ApiException(int status, string message) : Exception(message)
{
    public int Status { get; } = status;
}
