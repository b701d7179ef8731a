using System.Text;
using System.Text.Json;
using Ferry.Host;
using Xunit;

namespace Ferry.EndToEnd.Tests;

/// <summary>
/// A Linux VM with a disk (`ferry vm start linux --disk FILE`, the `disk` workload writing,
/// flushing and checking /dev/vda pass after pass) migrated between two host processes that see
/// the same disk path: at B it reaches the digest and console of `ferry run --disk` with its
/// own copy of the disk at the same instruction count, and both disk files hold the same bytes.
/// </summary>
[Collection("hosts")]
public sealed class DevicesEndToEndTests(TwoHosts hosts)
{
    private static readonly TimeSpan Long = TimeSpan.FromMinutes(3);
    private const string Config = "workload=disk,disk_mib=1";
    private const ulong StopAt = 2_000_000_000; // long enough that the VM still runs (and prints) at B on a fast machine

    private static string NewDisk()
    {
        string path = Path.Combine(Path.GetTempPath(), $"ferry-e2e-disk-{Guid.NewGuid():n}.img");
        var content = new byte[4 << 20];
        new Random(7).NextBytes(content);
        File.WriteAllBytes(path, content);
        return path;
    }

    [Theory]
    [InlineData("precopy")]
    [InlineData("postcopy")]
    [InlineData("hybrid")]
    public async Task A_linux_vm_with_a_disk_migrates_between_hosts_with_its_block_io_intact(string strategy)
    {
        (string digest, string console, byte[] referenceDisk) = await Reference.Value;
        string disk = NewDisk();
        string name = $"disk-{strategy}";
        try
        {
            (int exit, string stdoutText, string stderr) = await Ferry.RunTextAsync(Long, "vm", "start", "linux", "--host", hosts.A.Api, "--name", name,
                "--memory", "64M", "--icount", "--stop-at", StopAt.ToString(), "--config", Config, "--disk", disk, "--json");
            Assert.True(exit == 0, stderr);
            Assert.Equal(disk, JsonSerializer.Deserialize<VmStatus>(stdoutText, ApiJson.Options)!.Disk);

            await Api.WaitAsync(hosts.A.Api, name, s => s.InstructionsRetired >= 60_000_000 || s.State != VmState.Running, Long);
            (exit, _, stderr) = await Ferry.RunTextAsync(Long, "migrate", name, "--from", hosts.A.Api, "--to", hosts.B.Api,
                "--strategy", strategy, "--quiet", "--downtime-limit", "20ms", "--max-rounds", "8");
            Assert.True(exit == 0, $"migrate failed: {stderr}\nA: {hosts.A.Log}\nB: {hosts.B.Log}");

            VmStatus atB = await Api.WaitAsync(hosts.B.Api, name, s => s.State != VmState.Running && s.State != VmState.Incoming && s.Digest is not null, Long);
            Assert.Equal(StopAt, atB.InstructionsRetired);
            Assert.Equal(disk, atB.Disk);
            Assert.Equal(digest, atB.Digest);
            byte[] fromA = await Api.ConsoleAsync(hosts.A.Api, name, 0);
            byte[] fromB = await Api.ConsoleAsync(hosts.B.Api, name, atB.ConsoleStart);
            Assert.Equal(console, Encoding.ASCII.GetString([.. fromA, .. fromB]));
            Assert.NotEmpty(fromB);

            (exit, _, stderr) = await Ferry.RunTextAsync(Long, "vm", "rm", name, "--host", hosts.B.Api);
            Assert.True(exit == 0, stderr);
            Assert.True(referenceDisk.AsSpan().SequenceEqual(File.ReadAllBytes(disk)), "the migrated VM's disk differs from the unmigrated one's");
        }
        finally
        {
            File.Delete(disk);
        }
    }

    /// <summary>The unmigrated run to the same instruction count, once for every strategy: its digest, console and disk after.</summary>
    private static readonly Lazy<Task<(string Digest, string Console, byte[] Disk)>> Reference = new(async () =>
    {
        string referenceDisk = NewDisk();
        try
        {
            (int exit, byte[] stdout, string stderr) = await Ferry.RunAsync(Long, "run", "linux", "--memory", "64M", "--icount", "--no-idle-sleep",
                "--max-instructions", StopAt.ToString(), "--config", Config, "--disk", referenceDisk, "--digest");
            Assert.True(exit == 0, stderr);
            string text = Encoding.ASCII.GetString(stdout);
            int at = text.LastIndexOf("digest: ", StringComparison.Ordinal);
            Assert.True(at >= 0, "no digest line");
            (string digest, string console) = (text[(at + 8)..].Trim(), text[..at]);
            Assert.Contains("disk pass 3 sum", console, StringComparison.Ordinal);
            return (digest, console, File.ReadAllBytes(referenceDisk));
        }
        finally
        {
            File.Delete(referenceDisk);
        }
    });

    [Fact]
    public async Task A_missing_disk_is_refused_with_one_line_and_no_vm_is_left()
    {
        string missing = Path.Combine(Path.GetTempPath(), $"ferry-no-such-disk-{Guid.NewGuid():n}.img");
        (int exit, _, string stderr) = await Ferry.RunTextAsync(Long, "vm", "start", "linux", "--host", hosts.A.Api, "--name", "no-disk", "--disk", missing);
        Assert.Equal(125, exit);
        Assert.Contains("no such file", stderr, StringComparison.Ordinal);
        Assert.Single(stderr.Trim().Split('\n'));
        (exit, _, stderr) = await Ferry.RunTextAsync(Long, "run", "linux", "--net", "vde", "--max-instructions", "1");
        Assert.Equal(125, exit);
        Assert.Contains("must be 'tap'", stderr, StringComparison.Ordinal);
        (exit, string list, _) = await Ferry.RunTextAsync(Long, "vm", "list", "--host", hosts.A.Api);
        Assert.Equal(0, exit);
        Assert.DoesNotContain("no-disk", list, StringComparison.Ordinal);
    }
}
