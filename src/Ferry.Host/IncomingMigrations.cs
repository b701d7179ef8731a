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
    private readonly ResumeDesk _resumable = new();
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
            _ = HandleAsync(client, stopping);
        }
    }

    private async Task HandleAsync(TcpClient client, CancellationToken stopping)
    {
        var channel = new FrameChannel(new SocketConnectionStream(client.Client, _options.FaultSocketPriority));
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
        if (hello.Resume)
        {
            // A source reconnecting to a migration that lost its connections after the switchover.
            _log.LogInformation("{Role} connection from {Peer} resumes a migration", hello.Role, client.Client.RemoteEndPoint);
            if (!await _resumable.HandleAsync(hello, channel, stopping).ConfigureAwait(false))
            {
                await channel.DisposeAsync().ConfigureAwait(false);
            }

            return;
        }

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

        // A slot serves one attempt: the first main Hello with its token consumes it.
        if (!_slots.TryRemove(key, out Prepared? prepared))
        {
            await RefuseAndCloseAsync(channel, "unknown or expired migration token (prepare the destination first)").ConfigureAwait(false);
            return;
        }

        string? error = prepared.Slot.Validate(hello);
        if (error is not null)
        {
            _log.LogWarning("refused incoming migration of {Vm}: {Reason}", hello.VmName, error);
            _vms.RemoveFailed(prepared.Vm);
            await RefuseAndCloseAsync(channel, error).ConfigureAwait(false);
            return;
        }

        VmInstance vm = prepared.Vm;
        vm.AssignStopAt(hello.StopAt == ulong.MaxValue ? null : hello.StopAt);
        var fault = new TaskCompletionSource<FrameChannel>(TaskCreationOptions.RunContinuationsAsynchronously);
        _faultWaiters[key] = fault;
        await MigrationAcceptor.AcceptAsync(channel, stopping).ConfigureAwait(false);
        _log.LogInformation("incoming migration of {Vm} ({Strategy}) from {Peer}", hello.VmName, hello.Strategy, client.Client.RemoteEndPoint);
        var migration = new DestinationMigration(hello, vm, channel, fault.Task);
        _resumable.Register(hello.Token, migration);
        try
        {
            // A lost or silent source after the resume does not end this: the VM stays here and
            // the migration waits for the source to reconnect (the log says how many pages it lacks).
            migration.SourceLost += (missing, reason) => _log.LogWarning(
                "incoming migration of {Vm}: {Reason}; the VM stays here, {Missing} pages missing until the source reconnects", hello.VmName, reason, missing);
            await migration.RunAsync(stopping).ConfigureAwait(false);
            _log.LogInformation("incoming migration of {Vm} complete; {Faults} network faults", hello.VmName, migration.NetworkFaults);
            _resumable.Forget(hello.Token);
        }
        catch (Exception e)
        {
            // Only before the resume, or on a memory that does not verify: the source keeps (or
            // takes back) the VM. The migration stays known, so that a source that reconnects
            // learns the VM does not run here.
            _log.LogWarning("incoming migration of {Vm} failed: {Reason}", hello.VmName, e.Message);
            _vms.RemoveFailed(vm);
            _ = ForgetLaterAsync(hello.Token);
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

    private async Task ForgetLaterAsync(byte[] token)
    {
        await Task.Delay(TimeSpan.FromMinutes(10)).ConfigureAwait(false);
        _resumable.Forget(token);
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
