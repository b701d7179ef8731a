using System.Globalization;

namespace Ferry.Cli.Bench;

/// <summary>
/// The host network of networked VMs (issue 12; the same as scripts/ferry-net.sh): the bridge
/// <see cref="Name"/> with the host's address <see cref="HostAddress"/>/24, a TAP per VM
/// enslaved to it, each guest at its own <see cref="NetworkGuest"/> address (from the kernel's ip= argument).
/// A migrated VM's destination has its own TAP on the same bridge.
/// </summary>
internal static class HostBridge
{
    public const string Name = "ferry0";
    public const string HostAddress = "10.77.0.1";

    /// <summary>The kvserver workload's port.</summary>
    public const int ServicePort = 7000;

    /// <summary>Why networked VMs cannot run here, or null when they can.</summary>
    public static string? Unavailable()
    {
        if (!OperatingSystem.IsLinux())
        {
            return "networked VMs need Linux TAP devices";
        }

        if (!File.Exists("/dev/net/tun"))
        {
            return "/dev/net/tun is missing (no TUN/TAP support here)";
        }

        return Environment.IsPrivilegedProcess || Directory.Exists($"/sys/class/net/{Name}")
            ? null
            : $"the bridge {Name} does not exist and creating it needs root (scripts/ferry-net.sh up)";
    }

    /// <summary>Creates the bridge with the host's address, if it is not there yet (idempotent).</summary>
    public static async Task EnsureAsync(CancellationToken ct)
    {
        if (Unavailable() is { } why)
        {
            throw new CliException(why);
        }

        if (!Directory.Exists($"/sys/class/net/{Name}"))
        {
            await NetnsLink.RunAsync(ct, "ip", "link", "add", "name", Name, "type", "bridge");
            await NetnsLink.RunAsync(ct, "ip", "link", "set", "dev", Name, "type", "bridge", "stp_state", "0", "forward_delay", "0");
        }

        string addresses = await NetnsLink.RunAsync(ct, "ip", "-o", "addr", "show", "dev", Name);
        if (!addresses.Contains($"inet {HostAddress}/24", StringComparison.Ordinal))
        {
            await NetnsLink.RunAsync(ct, "ip", "addr", "add", $"{HostAddress}/24", "dev", Name);
        }

        await NetnsLink.RunAsync(ct, "ip", "link", "set", "dev", Name, "up");
    }

    /// <summary>
    /// Writes QEMU's TAP "ifup" script into <paramref name="directory"/>: QEMU creates the TAP
    /// (it goes away with QEMU), then the script enslaves it to the bridge and brings it up.
    /// </summary>
    public static string WriteQemuIfup(string directory)
    {
        string path = Path.Combine(directory, "ferry-ifup");
        File.WriteAllText(path, $"#!/bin/sh\nset -e\nip link set dev \"$1\" master {Name}\nip link set dev \"$1\" up\n");
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }

        return path;
    }

    /// <summary>
    /// QEMU's arguments for <paramref name="guest"/>'s network card on TAP <paramref name="tap"/> and
    /// its disk <paramref name="disk"/>. QEMU's virt board gives each -device the free virtio-mmio
    /// slot with the highest address, so the disk first lands in slot 7 and the card in slot 6,
    /// where Ferry puts them: the guest sees the same devices at the same addresses.
    /// </summary>
    public static string[] QemuDevices(NetworkGuest guest, string tap, string ifup, string disk) =>
    [
        "-drive", $"file={disk},if=none,id=d0,format=raw",
        "-device", "virtio-blk-device,drive=d0",
        "-netdev", $"tap,id=n0,ifname={tap},script={ifup},downscript=no",
        "-device", $"virtio-net-device,netdev=n0,mac={guest.Mac}",
    ];

    /// <summary>A TAP name of at most 15 characters, unique to this process and <paramref name="n"/>.</summary>
    public static string TapName(string prefix, int n)
    {
        string name = string.Create(CultureInfo.InvariantCulture, $"{prefix}{Environment.ProcessId % 100000}x{n}");
        return name.Length <= 15 ? name : throw new ArgumentException($"TAP name '{name}' is longer than 15 characters");
    }
}

/// <summary>
/// A guest's place on the bridge: its address (from the kernel's ip=) and its MAC, fixed so that
/// they are the same on both sides of a move. Guests on the bridge at the same time need their
/// own: tests that run beside the bench (or another helper's) take another host number.
/// </summary>
public sealed record NetworkGuest(string Address, string Mac)
{
    /// <summary>The agreed guest of issue 12: 10.77.0.2.</summary>
    public static readonly NetworkGuest Default = For(2);

    /// <summary>10.77.0.<paramref name="host"/> with MAC 52:54:00:77:00:(host in hex).</summary>
    public static NetworkGuest For(int host)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(host, 2);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(host, 254);
        return new NetworkGuest($"10.77.0.{host}", $"52:54:00:77:00:{host:x2}");
    }

    /// <summary>The kernel command-line argument that addresses the guest's eth0.</summary>
    public string KernelIpArgument => $"ip={Address}::{HostBridge.HostAddress}:255.255.255.0::eth0:off";
}
