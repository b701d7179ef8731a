using Ferry.Host;
using Ferry.Migration.Metrics;

namespace Ferry.Cli;

/// <summary>
/// Runs one migration between two host agents through their APIs: prepare the destination,
/// start the migration at the source, follow its progress, and on cancellation ask the
/// source to cancel (and keep following until it has decided), never abandoning it.
/// </summary>
internal static class MigrationDriver
{
    public static async Task<MigrationReport> RunAsync(HostClient from, HostClient to, string name, MigrateRequest settings,
        Action<MigrationStatus>? onProgress, CancellationToken cancellation)
    {
        // Everything the source would refuse is refused here, before the destination reserves a slot.
        if (Ferry.Migration.VmName.Check(name) is string badName)
        {
            throw new CliException(badName);
        }

        try
        {
            OutgoingMigrations.ToOptions(settings);
        }
        catch (ApiException e)
        {
            throw new CliException(e.Message);
        }

        VmStatus vm = await from.StatusAsync(name, cancellation).ConfigureAwait(false);
        IncomingResponse incoming = await to.PrepareIncomingAsync(new IncomingRequest
        {
            Name = name,
            MemoryBytes = vm.MemoryBytes,
            Icount = vm.Icount,
            Disk = vm.Disk,
            Net = vm.Net,
        }, cancellation).ConfigureAwait(false);

        MigrateResponse started = await from.MigrateAsync(name, settings with
        {
            Destination = ReachableEndpoint(incoming.DataEndpoint, to.BaseUrl),
            Token = incoming.Token,
            DestinationLabel = settings.DestinationLabel ?? to.BaseUrl.ToString(),
            DestinationApi = to.BaseUrl.ToString(),
        }, cancellation).ConfigureAwait(false);
        return await FollowAsync(from, started.Id, onProgress, cancellation).ConfigureAwait(false);
    }

    /// <summary>
    /// `ferry migrate --resume NAME`: a migration of NAME that lost its destination after the
    /// switchover (recovering at the source) reconnects now; then it is followed to its end.
    /// </summary>
    public static async Task<MigrationReport> ResumeAsync(HostClient from, string name, Action<MigrationStatus>? onProgress, CancellationToken cancellation)
    {
        VmStatus vm = await from.StatusAsync(name, cancellation).ConfigureAwait(false);
        if (vm.Migration is not string id)
        {
            throw new CliException($"VM '{name}' has no migration on {from.BaseUrl} to resume");
        }

        MigrationStatus status = await from.MigrationAsync(id, cancellation).ConfigureAwait(false);
        if (status.Done || !await from.ResumeMigrationAsync(id, cancellation).ConfigureAwait(false))
        {
            throw new CliException($"migration {id} of '{name}' is {status.Phase}: only a migration that is recovering (its destination lost after the switchover) can be resumed");
        }

        return await FollowAsync(from, id, onProgress, cancellation).ConfigureAwait(false);
    }

    private static async Task<MigrationReport> FollowAsync(HostClient from, string id, Action<MigrationStatus>? onProgress, CancellationToken cancellation)
    {
        MigrateResponse started = new(id);
        bool cancelSent = false;
        while (true)
        {
            if (cancellation.IsCancellationRequested && !cancelSent)
            {
                cancelSent = true;
                await from.CancelMigrationAsync(started.Id, CancellationToken.None).ConfigureAwait(false);
            }

            MigrationStatus status = await from.MigrationAsync(started.Id, CancellationToken.None).ConfigureAwait(false);
            onProgress?.Invoke(status);
            if (status.Done)
            {
                // Done without a report: the source agent's migration ended on a defect (its detail says which).
                return status.Report ?? throw new CliException($"migration {started.Id}: {status.Detail ?? "ended without a report"}");
            }

            try
            {
                await Task.Delay(100, cancelSent ? CancellationToken.None : cancellation).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
        }
    }

    /// <summary>A destination bound to 0.0.0.0 or [::] is reached at the host of its API URL.</summary>
    private static string ReachableEndpoint(string endpoint, Uri api)
    {
        int colon = endpoint.LastIndexOf(':');
        string host = endpoint[..colon];
        return host is "0.0.0.0" or "[::]" ? $"{api.Host}:{endpoint[(colon + 1)..]}" : endpoint;
    }
}
