using System.Collections.Concurrent;
using Ferry.Migration.Protocol;
using Ferry.Migration.Transport;

namespace Ferry.Migration;

/// <summary>
/// The destination's side of post-copy recovery, shared by the host agent and local
/// migrations: the migrations that may be resumed (by their token) and the pairing of a
/// resumed main connection with its fault connection. A migration stays known after it
/// fails, so that a source that reconnects learns the VM does not run here (and takes it back).
/// </summary>
public sealed class ResumeDesk
{
    private readonly ConcurrentDictionary<string, DestinationMigration> _migrations = new();
    private readonly ConcurrentDictionary<string, TaskCompletionSource<FrameChannel>> _faults = new();

    public void Register(byte[] token, DestinationMigration migration) => _migrations[Convert.ToHexString(token)] = migration;

    public void Forget(byte[] token) => _migrations.TryRemove(Convert.ToHexString(token), out _);

    /// <summary>
    /// Serves a connection whose Hello has the Resume flag. Returns true if a migration now owns
    /// the channel; false if it was refused or answered (the caller closes it).
    /// </summary>
    public async Task<bool> HandleAsync(Hello hello, FrameChannel channel, CancellationToken ct)
    {
        string key = Convert.ToHexString(hello.Token);
        if (hello.Role == ConnectionRole.Bulk)
        {
            // A resumed migration pushes on its main connection: it has no bulk channels.
            await MigrationAcceptor.RefuseAsync(channel, "a resumed migration takes no bulk connections").ConfigureAwait(false);
            return false;
        }

        if (hello.Role == ConnectionRole.Fault)
        {
            if (_faults.TryRemove(key, out TaskCompletionSource<FrameChannel>? waiter))
            {
                await MigrationAcceptor.AcceptAsync(channel, ct).ConfigureAwait(false);
                waiter.TrySetResult(channel);
                return true;
            }

            await MigrationAcceptor.RefuseAsync(channel, "no resumed migration is waiting for this fault connection").ConfigureAwait(false);
            return false;
        }

        if (!_migrations.TryGetValue(key, out DestinationMigration? migration))
        {
            await MigrationAcceptor.RefuseAsync(channel, "unknown migration token: nothing to resume here").ConfigureAwait(false);
            return false;
        }

        var fault = new TaskCompletionSource<FrameChannel>(TaskCreationOptions.RunContinuationsAsynchronously);
        _faults[key] = fault;
        await MigrationAcceptor.AcceptAsync(channel, ct).ConfigureAwait(false);
        ResumeStatus? status = await migration.AcceptResumeAsync(channel, fault.Task, ct).ConfigureAwait(false);
        if (status == ResumeStatus.RunningHere)
        {
            return true;
        }

        _faults.TryRemove(key, out _);
        if (status is ResumeStatus.NotResumed or ResumeStatus.Completed)
        {
            await channel.SendAsync(MessageType.ResumeState, new ResumeState(status.Value, null).Encode(), ct).ConfigureAwait(false);
        }
        else
        {
            await channel.SendAsync(MessageType.Failed, ReasonMessage.Encode("the migration cannot be resumed now (it did not settle)"), ct).ConfigureAwait(false);
        }

        return false;
    }
}
