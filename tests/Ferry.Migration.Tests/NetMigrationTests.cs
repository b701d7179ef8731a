using System.Diagnostics;
using System.Net.NetworkInformation;
using Ferry.Machine.Board;
using Ferry.Machine.Devices.Virtio;
using Ferry.Migration.Local;
using Ferry.Migration.Metrics;
using Ferry.Migration.Protocol;
using Xunit;

namespace Ferry.Migration.Tests;

/// <summary>A fact that needs TAP devices and a bridge (root, /dev/net/tun): skipped, with the reason, where they are missing.</summary>
public sealed class TapFactAttribute : TheoryAttribute
{
    public TapFactAttribute()
    {
        if (!File.Exists("/dev/net/tun"))
        {
            Skip = "/dev/net/tun is missing: no TAP devices on this host";
        }
        else if (Environment.UserName != "root")
        {
            Skip = "TAP devices and the bridge need root (CAP_NET_ADMIN)";
        }
    }
}

/// <summary>
/// A Linux guest with a virtio-net card on a TAP on the host bridge ferry0 answers the host
/// (ICMP echo, which its kernel answers) before and after a live migration in this process: the
/// destination opens its own TAP on the same bridge, and the card's GUEST_ANNOUNCE makes the
/// guest send gratuitous ARPs from there, so that the bridge forwards to the new port at once.
/// </summary>
public sealed class NetMigrationTests
{
    // Its own address and MAC on the bridge, apart from other tests' guests (.2, .21, .22).
    private const string GuestAddress = "10.77.0.31";
    private static readonly byte[] GuestMac = [0x52, 0x54, 0x00, 0x77, 0x00, 0x31];
    private const string CommandLine = LinuxBoot.DefaultCommandLine + " ferry.workload=idle ip=" + GuestAddress + "::10.77.0.1:255.255.255.0::eth0:off";

    /// <summary>ferry0 with 10.77.0.1/24, up (what scripts/ferry-net.sh up does), idempotently.</summary>
    private static void EnsureBridge()
    {
        if (!Directory.Exists("/sys/class/net/ferry0"))
        {
            Ip("link add name ferry0 type bridge");
        }

        Ip("link set dev ferry0 type bridge stp_state 0 forward_delay 0", check: false);
        if (!Ip("addr show dev ferry0").Contains("inet 10.77.0.1/24", StringComparison.Ordinal))
        {
            Ip("addr add 10.77.0.1/24 dev ferry0");
        }

        Ip("link set dev ferry0 up");
    }

    private static string Ip(string args, bool check = true)
    {
        using Process p = Process.Start(new ProcessStartInfo("ip", args) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        string output = p.StandardOutput.ReadToEnd();
        string error = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.True(!check || p.ExitCode == 0, $"ip {args}: {error}");
        return output;
    }

    /// <summary>Pings the guest until it answers or <paramref name="within"/> has passed; the time to the first reply.</summary>
    private static async Task<TimeSpan?> FirstReplyAsync(TimeSpan within)
    {
        using var ping = new Ping();
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < within)
        {
            PingReply reply = await ping.SendPingAsync(GuestAddress, 200);
            if (reply.Status == IPStatus.Success)
            {
                return clock.Elapsed;
            }
        }

        return null;
    }

    [TapFact]
    [InlineData(StrategyKind.PreCopy)]
    [InlineData(StrategyKind.PostCopy)]
    [InlineData(StrategyKind.Hybrid)]
    public async Task A_guest_on_a_tap_answers_the_host_before_and_after_a_migration(StrategyKind strategy)
    {
        EnsureBridge();
        var devices = new MachineDevices { Net = new NetBackendOptions { Mac = GuestMac } };
        (MigrationReport report, LocalVm source, LocalVm? destination) = await MigrateWhenAnsweringAsync(devices, strategy);
        using (source)
        using (destination)
        {
            Assert.True(report.Outcome == MigrationOutcome.Completed, report.Error);
            var card = (VirtioNet)destination!.Machine.Virtio.Single(t => t.Device is VirtioNet).Device!;
            Assert.NotEqual(((VirtioNet)source.Machine.Virtio.Single(t => t.Device is VirtioNet).Device!).Interface, card.Interface);
            Assert.Equal(GuestMac, card.Mac.ToArray());

            TimeSpan? after = await FirstReplyAsync(TimeSpan.FromSeconds(10));
            Assert.True(after is not null, "the guest did not answer after the migration");

            // The guest saw the announcement and acknowledged it on the control queue, and sent from the new TAP.
            Assert.Equal(VirtioNet.StatusLinkUp, card.LinkStatus);
            Assert.Equal(1, card.AnnouncementsAcknowledged);
            Assert.True(card.FramesSent > 0);
        }
    }

    private static async Task<(MigrationReport, LocalVm, LocalVm?)> MigrateWhenAnsweringAsync(MachineDevices devices, StrategyKind strategy)
    {
        var source = new LocalVm("linux-net", Harness.BootLinux(CommandLine, 64UL << 20, devices, icount: false), ulong.MaxValue, TimeSpan.FromMilliseconds(50));
        source.Start();
        TimeSpan? before = await FirstReplyAsync(TimeSpan.FromSeconds(120));
        if (before is null)
        {
            source.Dispose();
            Assert.Fail("the guest never answered before the migration");
        }

        (MigrationReport report, LocalVm? destination) = await LocalMigration.RunAsync(source,
            new MigrationOptions { Strategy = strategy, DowntimeLimit = TimeSpan.FromMilliseconds(50), MaxRounds = 5 });
        return (report, source, destination);
    }
}
