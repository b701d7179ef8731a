using System.CommandLine;
using Ferry.Machine.Board;
using Ferry.Machine.Devices.Virtio;

namespace Ferry.Cli;

/// <summary>`--disk FILE` and `--net tap[,ifname=NAME][,bridge=BR][,mac=..]`, shared by `run`, `resume` and `vm start`.</summary>
internal static class DeviceOptions
{
    public static (Option<string?> Disk, Option<string?> Net) Create() =>
    (
        new Option<string?>("--disk") { Description = "a raw disk image, the guest's virtio-blk disk (/dev/vda); live migration assumes the destination host sees the same path" },
        new Option<string?>("--net")
        {
            Description = $"a virtio-net card on a TAP interface: tap[,ifname=NAME][,bridge=BR (default {NetBackendOptions.DefaultBridge}; empty for none)][,mac=52:54:00:xx:xx:xx (default: from the VM's name)]; needs root or CAP_NET_ADMIN",
        }
    );

    /// <summary>The --disk path as a host agent opens it (absolute: the agent's working directory is its own), or null.</summary>
    public static string? DiskPath(string? disk) => disk is null ? null : Path.GetFullPath(disk);

    /// <summary>The devices the options ask for (the MAC fixed from <paramref name="vmName"/> unless given); throws a one-line error for a bad value.</summary>
    public static MachineDevices Resolve(string? disk, string? net, string vmName)
    {
        if (disk is not null && !File.Exists(disk))
        {
            throw new CliException($"--disk {disk}: no such file (create one, e.g. truncate -s 64M {disk})");
        }

        NetBackendOptions? nic = net is null ? null : NetBackendOptions.Parse(net);
        return new MachineDevices
        {
            Disk = DiskPath(disk),
            Net = nic is null ? null : nic with { Mac = nic.MacFor(vmName) },
        };
    }
}
