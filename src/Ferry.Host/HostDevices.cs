using Ferry.Machine.Board;
using Ferry.Machine.Cpu.Translation;
using Ferry.Machine.Devices.Virtio;

namespace Ferry.Host;

/// <summary>
/// A VM's virtio devices on this host, from the API's `disk` and `net` fields: the disk image at
/// its path (a migration's destination opens the same path), and a TAP of this host's own on the
/// bridge the card names, with the VM's MAC (derived from its name unless given, so it is the
/// same wherever the VM runs).
/// </summary>
internal static class HostDevices
{
    /// <summary>Builds the machine; a bad disk or network card is a 400 with the reason.</summary>
    /// <param name="ownTap">a migration's destination: its TAP is named by the kernel (the source's name may be taken on this machine)</param>
    public static VirtMachine CreateMachine(MachineConfig config, string? disk, string? net, string vmName, bool ownTap)
    {
        MachineDevices devices;
        try
        {
            NetBackendOptions? nic = net is null ? null : NetBackendOptions.Parse(net);
            if (disk is not null && (!Path.IsPathFullyQualified(disk) || !File.Exists(disk)))
            {
                throw new FormatException($"disk {disk}: no such file on this host (the path must be absolute)");
            }

            devices = new MachineDevices
            {
                Disk = disk,
                Net = nic is null ? null : nic with { Mac = nic.MacFor(vmName), Ifname = ownTap ? null : nic.Ifname },
            };
        }
        catch (FormatException e)
        {
            throw new ApiException(400, e.Message);
        }

        try
        {
            var machine = new VirtMachine(config, devices: devices);
            machine.Hart.SharedTranslations = TranslationCache.Process; // the host's VMs share what they translate
            return machine;
        }
        catch (IOException e)
        {
            throw new ApiException(400, e.Message);
        }
    }
}
