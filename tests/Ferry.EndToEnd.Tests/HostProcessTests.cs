using Xunit;

namespace Ferry.EndToEnd.Tests;

/// <summary>What a `ferry host` process runs beside its VMs: nothing that takes a core from a move.</summary>
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
}
