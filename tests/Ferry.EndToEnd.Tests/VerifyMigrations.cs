using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Http.Json;
using System.Text;
using Ferry.Host;
using Xunit;

namespace Ferry.EndToEnd.Tests;

/// <summary>
/// Migrations of the verify guest between two real host agents, in icount mode so that the
/// VM's digest at its stop is the unmigrated run's wherever it ends (the failure tests' oracle).
/// </summary>
internal static class VerifyMigrations
{
    public static readonly TimeSpan Long = TimeSpan.FromMinutes(3);

    public const string Guest = "verify";
    public const string Config = "size_mib=24";

    /// <summary>The guest must still run through the migration at the translator's speed (verify: up to 3,500 MIPS).</summary>
    public const ulong StopAt = 20_000_000_000;

    private static readonly ConcurrentDictionary<(string Guest, string Config, string Memory, ulong StopAt), Lazy<Task<string>>> References = new();

    /// <summary>
    /// Starts <paramref name="name"/> on a, prepares its slot on b, and starts its migration
    /// (to <paramref name="via"/> instead of b's data endpoint when given: a proxy in between).
    /// </summary>
    public static async Task<string> StartMigrationAsync(HostProcess a, HostProcess b, string name, string strategy, string bandwidth, string guest = Guest,
        string config = Config, ulong stopAt = StopAt, string memory = "64M", string? via = null, double downtimeLimitMs = 1)
    {
        await StartVmAsync(a, name, guest, config, stopAt, memory);
        return await MigrateAsync(a, b, name, strategy, bandwidth, memory, via, downtimeLimitMs);
    }

    public static async Task StartVmAsync(HostProcess a, string name, string guest = Guest, string config = Config, ulong stopAt = StopAt, string memory = "64M")
    {
        (int exit, _, string stderr) = await Ferry.RunTextAsync(Long, "vm", "start", guest, "--host", a.Api, "--name", name,
            "--memory", memory, "--icount", "--stop-at", stopAt.ToString(), "--config", config);
        Assert.True(exit == 0, stderr);
        await Api.WaitAsync(a.Api, name, s => s.InstructionsRetired >= 200_000_000 || s.State != VmState.Running, Long);
    }

    public static async Task<string> MigrateAsync(HostProcess a, HostProcess b, string name, string strategy, string bandwidth, string memory = "64M", string? via = null,
        double downtimeLimitMs = 1)
    {
        ulong bytes = ulong.Parse(memory.TrimEnd('M'), System.Globalization.CultureInfo.InvariantCulture) << 20;
        using HttpResponseMessage prepared = await Api.PostAsync(b.Api, "/v1/incoming", new IncomingRequest { Name = name, MemoryBytes = bytes, Icount = true });
        prepared.EnsureSuccessStatusCode();
        IncomingResponse slot = (await prepared.Content.ReadFromJsonAsync<IncomingResponse>(ApiJson.Options))!;
        using HttpResponseMessage started = await Api.PostAsync(a.Api, $"/v1/vms/{name}/migrate", new MigrateRequest
        {
            Destination = via ?? slot.DataEndpoint,
            Token = slot.Token,
            Strategy = strategy,
            Bandwidth = bandwidth,
            DowntimeLimitMs = downtimeLimitMs,
        });
        Assert.True(started.IsSuccessStatusCode, await started.Content.ReadAsStringAsync());
        return (await started.Content.ReadFromJsonAsync<MigrateResponse>(ApiJson.Options))!.Id;
    }

    public static async Task WaitPhaseAsync(HostProcess a, string id, string phase)
    {
        var watch = Stopwatch.StartNew();
        string last = "";
        while (watch.Elapsed < Long)
        {
            MigrationStatus s = await Api.MigrationAsync(a.Api, id);
            if (s.Phase == phase)
            {
                return;
            }

            Assert.False(s.Done, $"the migration ended ({s.Phase}: {s.Report?.Error}) before reaching {phase}");
            last = s.Phase;
            await Task.Delay(10);
        }

        Assert.Fail($"no {phase} phase (still {last})\n{a.Log}");
    }

    /// <summary>Waits for the VM on <paramref name="host"/> to stop at its stop-at count and compares its digest with the unmigrated run's.</summary>
    public static async Task AssertDigestAsync(HostProcess host, string name, string guest = Guest, string config = Config, ulong stopAt = StopAt, string memory = "64M")
    {
        VmStatus at = await Api.WaitAsync(host.Api, name, s => s.State != VmState.Running && s.State != VmState.Incoming && s.Digest is not null, Long);
        Assert.Equal(stopAt, at.InstructionsRetired);
        Assert.Equal(await ReferenceAsync(guest, config, stopAt, memory), at.Digest);
    }

    public static Task<string> ReferenceAsync(string guest = Guest, string config = Config, ulong stopAt = StopAt, string memory = "64M")
        => References.GetOrAdd((guest, config, memory, stopAt), k => new Lazy<Task<string>>(() => RunReferenceAsync(k.Guest, k.Config, k.Memory, k.StopAt))).Value;

    private static async Task<string> RunReferenceAsync(string guest, string config, string memory, ulong stopAt)
    {
        (int exit, byte[] stdout, string stderr) = await Ferry.RunAsync(Long, "run", guest, "--memory", memory, "--icount", "--no-idle-sleep",
            "--max-instructions", stopAt.ToString(), "--config", config, "--digest");
        Assert.True(exit == 0, stderr);
        string text = Encoding.ASCII.GetString(stdout);
        int at = text.LastIndexOf("digest: ", StringComparison.Ordinal);
        return text[(at + 8)..].Trim();
    }
}
