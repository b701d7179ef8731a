using System.Net;
using System.Net.Http.Headers;
using Ferry.Host;
using Ferry.Machine.Board;
using Xunit;

namespace Ferry.EndToEnd.Tests;

/// <summary>What a `ferry host` process runs beside its VMs, and what it prepares before its first move.</summary>
public sealed class HostProcessTests
{
    [Fact]
    public async Task A_host_has_no_thread_that_watches_files()
    {
        if (!Directory.Exists("/proc/self/task"))
        {
            return; // (thread names are read from Linux's /proc)
        }

        await using HostProcess host = await HostProcess.StartAsync("A", null, "--no-warm-up");
        string[] threads = [.. Directory.GetDirectories($"/proc/{host.Pid}/task").Select(t => File.ReadAllText(Path.Combine(t, "comm")).Trim())];
        Assert.Contains(threads, t => t.StartsWith(".NET", StringComparison.Ordinal)); // (the names are readable)
        Assert.DoesNotContain(".NET File Watch", threads);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("warm-up-secret")]
    public async Task The_api_warm_up_calls_what_a_move_polls_and_leaves_no_vm(string? secret)
    {
        await using var host = new HostAgent(new HostOptions
        {
            DataEndpoint = new IPEndPoint(IPAddress.Loopback, 0),
            ApiUrl = "http://127.0.0.1:0",
            Name = "warm",
            Secret = secret,
            MaxMemoryBytes = 64UL << 20,
        });
        await host.StartAsync();
        GuestImage image = GuestImage.Load(Path.Combine(Ferry.RepoRoot, "guests", "bin", "idle.elf"));

        (int calls, int failed) = await ApiWarmUp.RunAsync(host.ApiUrl, secret, image, rounds: 1, TimeSpan.Zero, CancellationToken.None);
        Assert.Equal((ApiWarmUp.CallsPerRound * 5) + 2, calls); // and the VM's stop and removal
        Assert.Equal(0, failed);

        using var http = new HttpClient { BaseAddress = new Uri(host.ApiUrl) };
        if (secret is not null)
        {
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", secret);
        }

        Assert.Equal("[]", await http.GetStringAsync("/v1/vms")); // its VM is gone
    }
}
