using System.Net;
using System.Net.Http.Json;
using Ferry.Host;
using Xunit;

namespace Ferry.EndToEnd.Tests;

/// <summary>
/// Who owns a VM during a migration, as the operator sees it: stop, resume and remove of a VM
/// that a migration holds are refused with a reason (or, before the switchover at the source,
/// stop cancels the migration first), and no sequence of them frees memory a migration still
/// uses. Each test has its own two hosts: a crash must not take the shared ones down.
/// </summary>
public sealed class OwnershipTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(2);
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(60) };

    /// <summary>Two fresh hosts and a fast-dirtying VM migrating from A to B over a slow link.</summary>
    private sealed record Migrating(HostProcess A, HostProcess B, string Name, string Id) : IAsyncDisposable
    {
        public static async Task<Migrating> StartAsync(string name, string strategy)
        {
            HostProcess a = await HostProcess.StartAsync("A");
            HostProcess b = await HostProcess.StartAsync("B");
            (int exit, _, string stderr) = await Ferry.RunTextAsync(Timeout, "vm", "start", "dirty", "--host", a.Api, "--name", name, "--memory", "32M", "--config", "size_mib=8,rate=0");
            Assert.True(exit == 0, stderr);
            return new Migrating(a, b, name, await MigrateAsync(a, b, name, strategy));
        }

        public async ValueTask DisposeAsync()
        {
            await A.DisposeAsync();
            await B.DisposeAsync();
        }
    }

    private static async Task<string> MigrateAsync(HostProcess from, HostProcess to, string name, string strategy)
    {
        using HttpResponseMessage prepared = await Api.PostAsync(to.Api, "/v1/incoming", new IncomingRequest { Name = name, MemoryBytes = 32UL << 20 });
        prepared.EnsureSuccessStatusCode();
        IncomingResponse slot = (await prepared.Content.ReadFromJsonAsync<IncomingResponse>(ApiJson.Options))!;
        using HttpResponseMessage started = await Api.PostAsync(from.Api, $"/v1/vms/{name}/migrate", new MigrateRequest
        {
            Destination = slot.DataEndpoint,
            Token = slot.Token,
            Strategy = strategy,
            Bandwidth = "5Mbit", // about 14 s for the guest's pages: the calls below land while it is still held
            DowntimeLimitMs = 1,
        });
        Assert.True(started.IsSuccessStatusCode, await started.Content.ReadAsStringAsync());
        return (await started.Content.ReadFromJsonAsync<MigrateResponse>(ApiJson.Options))!.Id;
    }

    private static async Task<(HttpStatusCode Status, string Error)> CallAsync(HttpMethod method, string url)
    {
        using var request = new HttpRequestMessage(method, url) { Content = method == HttpMethod.Post ? JsonContent.Create(new { }) : null };
        using HttpResponseMessage response = await Http.SendAsync(request);
        string error = "";
        if (!response.IsSuccessStatusCode)
        {
            error = (await response.Content.ReadFromJsonAsync<ErrorResponse>(ApiJson.Options))!.Error;
        }

        return (response.StatusCode, error);
    }

    /// <summary>The host process lives and answers its API.</summary>
    private static async Task AssertAliveAsync(HostProcess host)
    {
        await Task.Delay(1000); // a use after free crashes the process within moments
        Assert.False(host.HasExited, "the host agent died:\n" + host.Log);
        using HttpResponseMessage r = await Http.GetAsync($"{host.Api}/v1/host");
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
    }

    [Fact]
    public async Task Stop_and_remove_during_precopy_at_the_source_cancel_it_first_and_the_host_survives()
    {
        await using Migrating m = await Migrating.StartAsync("own-pre", "precopy");
        (HostProcess a, HostProcess b, string name, string id) = (m.A, m.B, m.Name, m.Id);
        await Api.WaitAsync(a.Api, name, s => s.State == VmState.Departing, Timeout);
        await Task.Delay(500);

        // While the migration holds it: resume and remove are refused with the reason.
        (HttpStatusCode status, string error) = await CallAsync(HttpMethod.Post, $"{a.Api}/v1/vms/{name}/resume");
        Assert.Equal(HttpStatusCode.Conflict, status);
        Assert.Contains("is migrating", error);
        (status, error) = await CallAsync(HttpMethod.Delete, $"{a.Api}/v1/vms/{name}");
        Assert.Equal(HttpStatusCode.Conflict, status);
        Assert.Contains("cancel the migration first", error);

        // Stop before the switchover: the migration is cancelled, then the VM stops here.
        (int exit, _, string stderr) = await Ferry.RunTextAsync(Timeout, "vm", "stop", name, "--host", a.Api);
        Assert.True(exit == 0, stderr);
        MigrationStatus done = await Api.MigrationAsync(a.Api, id);
        Assert.Equal("cancelled", done.Phase);
        VmStatus stopped = await Api.StatusAsync(a.Api, name);
        Assert.Equal(VmState.Stopped, stopped.State);
        Assert.NotNull(stopped.Digest);
        (exit, _, stderr) = await Ferry.RunTextAsync(Timeout, "vm", "rm", name, "--host", a.Api);
        Assert.True(exit == 0, stderr);

        await AssertAliveAsync(a);
        await AssertAliveAsync(b);
        Assert.Null(await Api.TryStatusAsync(a.Api, name));
        // The destination dropped its copy when the source cancelled.
        VmStatus? atB = await Api.TryStatusAsync(b.Api, name);
        for (int i = 0; i < 100 && atB is not null && atB.State != VmState.Failed; i++)
        {
            await Task.Delay(100);
            atB = await Api.TryStatusAsync(b.Api, name);
        }

        Assert.True(atB is null || atB.State == VmState.Failed, $"the VM is {atB?.State} at the destination");
    }

    [Fact]
    public async Task Stop_and_remove_during_postcopy_at_the_destination_are_refused_and_the_vm_arrives()
    {
        await using Migrating m = await Migrating.StartAsync("own-post", "postcopy");
        (HostProcess a, HostProcess b, string name, string id) = (m.A, m.B, m.Name, m.Id);
        VmStatus arriving = await Api.WaitAsync(b.Api, name, s => s.State is VmState.Arriving or VmState.Running, Timeout);
        Assert.Equal(VmState.Arriving, arriving.State); // pages are still missing at 5 Mbit/s

        (HttpStatusCode status, string error) = await CallAsync(HttpMethod.Post, $"{b.Api}/v1/vms/{name}/stop");
        Assert.Equal(HttpStatusCode.Conflict, status);
        Assert.Contains("still arriving", error);
        (status, error) = await CallAsync(HttpMethod.Delete, $"{b.Api}/v1/vms/{name}");
        Assert.Equal(HttpStatusCode.Conflict, status);
        Assert.Contains("still arriving", error);
        // At the source the VM is being handed over: it cannot be stopped or removed there either.
        (status, _) = await CallAsync(HttpMethod.Post, $"{a.Api}/v1/vms/{name}/stop");
        Assert.Equal(HttpStatusCode.Conflict, status);
        (status, _) = await CallAsync(HttpMethod.Delete, $"{a.Api}/v1/vms/{name}");
        Assert.Equal(HttpStatusCode.Conflict, status);
        // The CLI says the same in one line.
        (int exit, _, string stderr) = await Ferry.RunTextAsync(Timeout, "vm", "rm", name, "--host", b.Api);
        Assert.Equal(125, exit);
        Assert.Matches("still arriving|stop it first", stderr); // on a loaded machine it may have arrived meanwhile: then it is running here

        await AssertAliveAsync(b);
        await AssertAliveAsync(a);
        MigrationStatus done = await Api.WaitMigrationAsync(a.Api, id, Timeout);
        Assert.Equal("completed", done.Phase);
        Assert.Equal(VmState.Running, (await Api.StatusAsync(b.Api, name)).State);
        Assert.Equal(VmState.Migrated, (await Api.StatusAsync(a.Api, name)).State);

        // Now the destination owns it: stop and remove work.
        (exit, _, stderr) = await Ferry.RunTextAsync(Timeout, "vm", "stop", name, "--host", b.Api);
        Assert.True(exit == 0, stderr);
        (exit, _, stderr) = await Ferry.RunTextAsync(Timeout, "vm", "rm", name, "--host", b.Api);
        Assert.True(exit == 0, stderr);
        await AssertAliveAsync(b);
    }

    [Fact]
    public void The_lifecycle_table_rejects_moves_that_would_lose_or_duplicate_a_vm()
    {
        // A VM that left never runs here again; one that arrives is never discarded once it runs here.
        Assert.False(VmInstance.Legal(VmState.Migrated, VmState.Running));
        Assert.False(VmInstance.Legal(VmState.Failed, VmState.Running));
        Assert.False(VmInstance.Legal(VmState.Arriving, VmState.Stopped));
        Assert.False(VmInstance.Legal(VmState.Migrating, VmState.Stopped));
        Assert.False(VmInstance.Legal(VmState.Running, VmState.Migrated)); // only through a migration
        Assert.False(VmInstance.Legal(VmState.Running, VmState.Failed));
        Assert.True(VmInstance.Legal(VmState.Departing, VmState.Migrating));
        Assert.True(VmInstance.Legal(VmState.Arriving, VmState.Running));
        foreach (VmState s in Enum.GetValues<VmState>())
        {
            Assert.Equal(VmInstance.HeldByMigration(s), s is VmState.Incoming or VmState.Arriving or VmState.Departing or VmState.Migrating);
        }
    }
}
