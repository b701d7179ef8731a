using System.Buffers.Binary;
using System.Diagnostics;
using Ferry.Cli.Bench;
using Ferry.Machine.Devices;
using Ferry.Machine.Devices.Virtio;
using Ferry.Machine.Memory;

namespace Ferry.Cli.Tests;

/// <summary>A fact that needs TAP devices on the ferry0 bridge (root, or the bridge made by scripts/ferry-net.sh).</summary>
public sealed class TapFactAttribute : FactAttribute
{
    public TapFactAttribute() => Skip = HostBridge.Unavailable();
}

/// <summary>
/// A network card's part in a move, on real TAP devices on the ferry0 bridge: two cards with the
/// VM's MAC (the source's and the destination's) and a third TAP that plays the network. The
/// source's card takes its link down at the pause, so the bridge forgets the VM's port and floods
/// its frames; the destination's card keeps what reaches it after the pause, also before it hears
/// of the pause (within its lookback), and nothing older; when the VM runs there, the card's RARP moves the VM's MAC to its port even
/// though the guest (absent here) announces nothing.
/// </summary>
public sealed class NetworkSwitchoverTests : IDisposable
{
    private static readonly byte[] Mac = [0x52, 0x54, 0x00, 0x7e, 0x57, 0x01];
    private readonly GuestMemory _memory = new(1UL << 20);

    public void Dispose() => _memory.Dispose();

    /// <summary>A card on a new TAP on the bridge, on a transport whose driver never comes (so only the host side announces).</summary>
    private VirtioNet Card()
    {
        var net = new VirtioNet(Mac, () => { }, new TapDevice(null, HostBridge.Name));
        _ = new VirtioMmio(6, net, new InterruptLine(new NoSink(), 7), new GuestDma(_memory, () => CancellationToken.None), _ => { });
        return net;
    }

    private sealed class NoSink : IInterruptSink
    {
        public void SetInput(int input, bool level)
        {
        }
    }

    [TapFact]
    public async Task The_source_departs_the_destination_holds_what_came_after_the_pause_and_its_announcement_moves_the_mac()
    {
        await HostBridge.EnsureAsync(CancellationToken.None);
        using var network = new TapDevice(null, HostBridge.Name);
        using VirtioNet source = Card();
        using VirtioNet destination = Card();
        // Wider than the product's 50 ms: between the card reading the frame below and this test
        // calling Hold, a loaded machine can leave the test's thread waiting longer than 50 ms
        // (the full suite did). The broadcast from before the pause is at least 200 ms old then.
        destination.StandbyLookback = TimeSpan.FromMilliseconds(150);

        // The VM runs at the source: its announcement teaches the bridge where it is.
        source.Arrive();
        Assert.True(await Eventually(() => PortOf(Mac) == source.Interface), $"the bridge did not learn the VM at the source's port ({PortOf(Mac) ?? "nowhere"})");
        Assert.True(source.SelfAnnouncements >= 1);

        // Before the pause the destination's card discards what reaches it (a broadcast here).
        destination.StandBy();
        Assert.True(network.Send(Frame(Broadcast, 0x11)));
        await Task.Delay(200);

        // The pause: the source's link goes down and the bridge forgets the VM's port.
        source.Depart();
        Assert.Null(source.LinkError);
        Assert.False(LinkUp(source.Interface!), "the source's TAP is still up");
        Assert.NotEqual(source.Interface, PortOf(Mac));

        // What the network sends the VM now floods to the destination: what reaches it before it
        // hears of the pause is kept (the source never saw it), as is what comes after.
        long readBefore = destination.StandbyFramesRead;
        Assert.True(network.Send(Frame(Mac, 0x33)));
        Assert.True(SpinWait.SpinUntil(() => destination.StandbyFramesRead > readBefore, TimeSpan.FromSeconds(1)), "the standby card did not read the frame sent after the source's pause");
        destination.Hold();
        Assert.True(destination.StandbyFramesKept >= 1, "the frame that reached the standby card after the source's pause was not kept");
        Assert.True(network.Send(Frame(Mac, 0x22)));
        await Task.Delay(200);
        destination.Arrive();
        Assert.True(await Eventually(() => destination.HasExternalWork), "the frame sent after the pause did not reach the destination's card");
        Assert.True(await Eventually(() => PortOf(Mac) == destination.Interface), $"the bridge did not learn the VM at the destination's port ({PortOf(Mac) ?? "nowhere"})");
        Assert.True(destination.SelfAnnouncements >= 1);

        // The frames from after the pause are there, in order; the broadcast from before it is not
        // (older than the standby's lookback); the host's own multicasts may have come too.
        List<byte[]> waiting = Waiting(destination);
        Assert.Contains(waiting, f => f.Length == 60 && f[59] == 0x22 && f.AsSpan(0, 6).SequenceEqual(Mac));
        int kept = waiting.FindIndex(f => f.Length == 60 && f[59] == 0x33 && f.AsSpan(0, 6).SequenceEqual(Mac));
        Assert.True(kept >= 0, "the frame from between the source's pause and the destination's hold is lost");
        Assert.True(kept < waiting.FindIndex(f => f.Length == 60 && f[59] == 0x22), "the frames are out of order");
        Assert.DoesNotContain(waiting, f => f.Length == 60 && f[59] == 0x11 && f.AsSpan(12, 2).SequenceEqual(new byte[] { 0x88, 0xB5 }));
    }

    /// <summary>The frames waiting in a card, as its saved state carries them.</summary>
    private static List<byte[]> Waiting(VirtioNet card)
    {
        byte[] state = card.SaveDeviceState();
        int count = BinaryPrimitives.ReadUInt16LittleEndian(state.AsSpan(8));
        var frames = new List<byte[]>();
        int at = 10;
        for (int i = 0; i < count; i++)
        {
            int length = BinaryPrimitives.ReadUInt16LittleEndian(state.AsSpan(at));
            frames.Add(state.AsSpan(at + 2, length).ToArray());
            at += 2 + length;
        }

        return frames;
    }

    [TapFact]
    public async Task A_source_that_keeps_its_vm_brings_its_link_back_and_announces_it_again()
    {
        await HostBridge.EnsureAsync(CancellationToken.None);
        using VirtioNet source = Card();
        source.Arrive();
        source.Depart();
        Assert.False(LinkUp(source.Interface!));
        long before = source.SelfAnnouncements;

        source.Arrive(); // the move failed: the VM runs here again
        Assert.True(LinkUp(source.Interface!), "the source's TAP stayed down");
        Assert.True(await Eventually(() => PortOf(Mac) == source.Interface), "the bridge did not learn the VM back at the source's port");
        Assert.True(source.SelfAnnouncements > before);
    }

    private static readonly byte[] Broadcast = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff];

    private static byte[] Frame(byte[] destination, byte fill)
    {
        var f = new byte[60];
        Array.Fill(f, fill);
        destination.CopyTo(f, 0);
        byte[] from = [0x02, 0, 0, 0x7e, 0x57, 0x99];
        from.CopyTo(f, 6);
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(12), 0x88B5); // local experimental ethertype
        return f;
    }

    private static bool LinkUp(string ifname) =>
        (Convert.ToInt32(File.ReadAllText($"/sys/class/net/{ifname}/flags").Trim(), 16) & 1) != 0;

    /// <summary>The bridge port the forwarding table has <paramref name="mac"/> on, or null.</summary>
    private static string? PortOf(byte[] mac)
    {
        var psi = new ProcessStartInfo("bridge", "fdb show br " + HostBridge.Name) { RedirectStandardOutput = true };
        using Process p = Process.Start(psi)!;
        string output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        string text = NetBackendOptions.FormatMac(mac);
        foreach (string line in output.Split('\n'))
        {
            string[] f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (f.Length >= 3 && f[0] == text && f[1] == "dev" && !line.Contains("permanent", StringComparison.Ordinal))
            {
                return f[2];
            }
        }

        return null;
    }

    private static async Task<bool> Eventually(Func<bool> condition)
    {
        for (int i = 0; i < 50; i++)
        {
            if (condition())
            {
                return true;
            }

            await Task.Delay(20);
        }

        return condition();
    }
}
