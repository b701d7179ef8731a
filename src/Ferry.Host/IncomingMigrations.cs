using System.Collections.Concurrent;
using Ferry.Machine.Board;
using Ferry.Migration;
using Ferry.Migration.Protocol;
using Ferry.Migration.Transport;
using Microsoft.Extensions.Logging;

namespace Ferry.Host;

/// <summary>
/// The destination role of a host: prepared slots (one per expected VM) and the migrations
/// they receive. The transport's <see cref="MigrationListener"/> accepts the connections (TLS
/// if configured), reads each Hello and pairs a migration's main and fault connections; a main
/// Hello is checked against a slot before anything else.
/// </summary>
public sealed class IncomingMigrations
{
    private readonly HostOptions _options;
    private readonly VmRegistry _vms;
    private readonly ILogger _log;
    private readonly ConcurrentDictionary<string, Prepared> _slots = new();
    private readonly MigrationTransport _transport;
    private readonly object _prepareLock = new();
    private MigrationListener? _listener;
    private readonly ResumeDesk _resumable = new();

    public IncomingMigrations(HostOptions options, MigrationTransport transport, VmRegistry vms, ILogger log)
    {
        _options = options;
        _transport = transport;
        _vms = vms;
        _log = log;
    }

    public string? Endpoint => _listener?.Endpoint;

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
        var vm = new VmInstance(request.Name, HostDevices.CreateMachine(slot.Config, request.Disk, request.Net, request.Name, ownTap: true), null, VmState.Incoming, _options.Name);
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
        _listener = new MigrationListener(_transport.Listen(_options.DataEndpoint.ToString()), RunAsync, m => _log.LogWarning("{Refusal}", m),
            _options.MaxPendingConnections, _options.HandshakeTimeout, ResumeAsync);
        _listener.Start(stopping);
    }

    public async Task StopAsync()
    {
        if (_listener is not null)
        {
            await _listener.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>Takes the slot whose token the Hello carries: every slot is compared, in constant time.</summary>
    private Prepared? TakeSlot(byte[] token)
    {
        KeyValuePair<string, Prepared>? found = null;
        foreach (KeyValuePair<string, Prepared> entry in _slots)
        {
            if (entry.Value.Slot.Matches(token))
            {
                found = entry;
            }
        }

        return found is { } f && _slots.TryRemove(f.Key, out Prepared? prepared) ? prepared : null;
    }

    private async Task RunAsync(IncomingMigration incoming, CancellationToken stopping)
    {
        Hello hello = incoming.Hello;

        // A slot serves one attempt: the first main Hello with its token consumes it.
        if (TakeSlot(hello.Token) is not Prepared prepared)
        {
            _log.LogWarning("refused a migration connection from {Peer}: unknown or expired migration token", incoming.Peer);
            await incoming.RefuseAsync("unknown or expired migration token (prepare the destination first)").ConfigureAwait(false);
            return;
        }

        string? error = prepared.Slot.Validate(hello);
        if (error is not null)
        {
            _log.LogWarning("refused incoming migration of {Vm} from {Peer}: {Reason}", hello.VmName, incoming.Peer, error);
            _vms.RemoveFailed(prepared.Vm);
            await incoming.RefuseAsync(error).ConfigureAwait(false);
            return;
        }

        VmInstance vm = prepared.Vm;
        using MachineLease? lease = vm.TryLease();
        if (lease is null)
        {
            _log.LogWarning("refused incoming migration of {Vm} from {Peer}: the VM prepared for it was removed", hello.VmName, incoming.Peer);
            await incoming.RefuseAsync($"the VM '{hello.VmName}' prepared for this migration was removed").ConfigureAwait(false);
            return;
        }

        vm.AssignStopAt(hello.StopAt == ulong.MaxValue ? null : hello.StopAt);
        await incoming.AcceptAsync(stopping).ConfigureAwait(false);
        _log.LogInformation("incoming migration of {Vm} ({Strategy}) from {Peer}", hello.VmName, hello.Strategy, incoming.Peer);
        var migration = new DestinationMigration(hello, vm, incoming.Main, incoming.Fault, incoming.Bulk);
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
            _ = ForgetLaterAsync(hello.Token);
            if (vm.State is VmState.Failed or VmState.Incoming)
            {
                _vms.RemoveFailed(vm); // never a VM that completed here: it is this host's now
            }
        }
    }

    private async Task ForgetLaterAsync(byte[] token)
    {
        await Task.Delay(TimeSpan.FromMinutes(10)).ConfigureAwait(false);
        _resumable.Forget(token);
    }

    /// <summary>A source reconnecting to a migration that lost its connections after the switchover: true if the migration took the connection.</summary>
    private async Task<bool> ResumeAsync(Hello hello, FrameChannel channel, string peer, CancellationToken stopping)
    {
        _log.LogInformation("{Role} connection from {Peer} resumes a migration", hello.Role, peer);
        return await _resumable.HandleAsync(hello, channel, stopping).ConfigureAwait(false);
    }
}

/// <summary>An API error with its HTTP status.</summary>
public sealed class ApiException(int status, string message) : Exception(message)
{
    public int Status { get; } = status;
}
