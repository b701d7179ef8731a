using System.CommandLine;
using System.Text.Json;
using Ferry.Host;
using Ferry.Machine.Board;
using Spectre.Console;

namespace Ferry.Cli;

/// <summary>`ferry vm start|list|status|console|stop|resume|rm`: VMs on a host agent, through its API.</summary>
internal static class VmCommands
{
    public static Command Create()
    {
        var vm = new Command("vm", "Manage VMs on a host agent");
        vm.Subcommands.Add(Start());
        vm.Subcommands.Add(List());
        vm.Subcommands.Add(Status());
        vm.Subcommands.Add(Console());
        vm.Subcommands.Add(Simple("stop", "Stop a VM (it keeps its state and console)", async (c, n, ct) => await c.StopAsync(n, ct)));
        vm.Subcommands.Add(Simple("resume", "Resume a VM left paused here by a failed migration", async (c, n, ct) => await c.ResumeAsync(n, ct)));
        vm.Subcommands.Add(Simple("rm", "Remove a stopped, exited or migrated VM's record", async (c, n, ct) =>
        {
            await c.RemoveAsync(n, ct);
            return null;
        }));
        return vm;
    }

    private static Command Start()
    {
        var image = new Argument<string>("IMAGE") { Description = "guest ELF file, built-in guest name, or linux (the built-in Linux kernel and initramfs on OpenSBI; --config KEY=VALUE becomes ferry.KEY=VALUE on its command line)" };
        var host = Common.HostOption();
        var secret = Common.SecretOption();
        var name = new Option<string?>("--name") { Description = "VM name (default: the image name)" };
        var memory = new Option<string>("--memory") { Description = "guest RAM size", DefaultValueFactory = _ => "256M" };
        var icount = new Option<bool>("--icount") { Description = "instruction-counted time (deterministic)" };
        var stopAt = new Option<ulong?>("--stop-at") { Description = "pause the VM when it has retired N instructions, wherever it then runs" };
        var config = new Option<string?>("--config") { Description = "guest configuration values, e.g. table_mib=64" };
        var json = Common.JsonOption();
        var (disk, net) = DeviceOptions.Create();
        var append = new Option<string?>("--append") { Description = $"for linux: the kernel command line (default \"{LinuxBoot.DefaultCommandLine}\"; add ip=10.77.0.2::10.77.0.1:255.255.255.0::eth0:off for --net), before the ferry.KEY=VALUE of --config" };
        var cmd = new Command("start", "Start a VM on a host") { image, host, secret, name, memory, icount, stopAt, config, json, disk, net, append };
        cmd.SetAction((ParseResult p, CancellationToken ct) => Cli.GuardAsync(async () =>
        {
            string imageName = p.GetValue(image)!;
            StartVmRequest request;
            if (imageName == GuestCatalog.Linux)
            {
                LinuxBootFiles files = GuestCatalog.ResolveLinux(null, null, p.GetValue(append), null, p.GetValue(config));
                request = new StartVmRequest
                {
                    Name = p.GetValue(name) ?? GuestCatalog.Linux,
                    Linux = GuestCatalog.Request(files),
                    MemoryBytes = MachineConfig.ParseSize(p.GetValue(memory)!),
                    Icount = p.GetValue(icount),
                    StopAt = p.GetValue(stopAt),
                    Disk = DeviceOptions.DiskPath(p.GetValue(disk)),
                    Net = p.GetValue(net),
                };
            }
            else
            {
                if (p.GetValue(append) is not null)
                {
                    throw new CliException("--append goes with linux");
                }

                GuestImage guest = GuestCatalog.Resolve(imageName, p.GetValue(config));
                request = new StartVmRequest
                {
                    Name = p.GetValue(name) ?? guest.Name,
                    Image = Convert.ToBase64String(guest.Bytes),
                    MemoryBytes = MachineConfig.ParseSize(p.GetValue(memory)!),
                    Icount = p.GetValue(icount),
                    StopAt = p.GetValue(stopAt),
                    Disk = DeviceOptions.DiskPath(p.GetValue(disk)),
                    Net = p.GetValue(net),
                };
            }

            using var client = new HostClient(p.GetValue(host)!, Common.Secret(p, secret));
            VmStatus status = await client.StartVmAsync(request, ct);
            Print(status, p.GetValue(json));
            return 0;
        }));
        return cmd;
    }

    private static Command List()
    {
        var host = Common.HostOption();
        var secret = Common.SecretOption();
        var json = Common.JsonOption();
        var cmd = new Command("list", "List the VMs of a host") { host, secret, json };
        cmd.SetAction((ParseResult p, CancellationToken ct) => Cli.GuardAsync(async () =>
        {
            using var client = new HostClient(p.GetValue(host)!, Common.Secret(p, secret));
            List<VmStatus> vms = await client.ListAsync(ct);
            if (p.GetValue(json))
            {
                System.Console.Out.WriteLine(JsonSerializer.Serialize(vms, ApiJson.Options));
                return 0;
            }

            var table = new Table().AddColumns("NAME", "STATE", "INSTRUCTIONS", "MEMORY", "MIGRATION");
            foreach (VmStatus s in vms)
            {
                table.AddRow(Markup.Escape(s.Name), VmInstance.Describe(s.State) + (s.WaitingOnNetwork ? " (waiting on network)" : ""), s.InstructionsRetired.ToString("N0"), $"{s.MemoryBytes >> 20} MiB", Markup.Escape(s.Migration ?? ""));
            }

            AnsiConsole.Write(table);
            return 0;
        }));
        return cmd;
    }

    private static Command Status()
    {
        var name = new Argument<string>("NAME");
        var host = Common.HostOption();
        var secret = Common.SecretOption();
        var json = Common.JsonOption();
        var cmd = new Command("status", "Show a VM's status") { name, host, secret, json };
        cmd.SetAction((ParseResult p, CancellationToken ct) => Cli.GuardAsync(async () =>
        {
            using var client = new HostClient(p.GetValue(host)!, Common.Secret(p, secret));
            Print(await client.StatusAsync(p.GetValue(name)!, ct), p.GetValue(json));
            return 0;
        }));
        return cmd;
    }

    private static Command Console()
    {
        var name = new Argument<string>("NAME");
        var host = Common.HostOption();
        var secret = Common.SecretOption();
        var follow = new Option<bool>("--follow", "-f") { Description = "keep printing new output, following the VM to the host it moves to" };
        var from = new Option<long?>("--from") { Description = "console byte offset to start at (default: where this host's part starts)" };
        var cmd = new Command("console", "Print a VM's console output; with --follow keep following it, across live migrations, and type into it when stdin is a terminal (Ctrl-] detaches)")
        {
            name, host, secret, follow, from,
        };
        cmd.SetAction((ParseResult p, CancellationToken ct) => Cli.GuardAsync(
            () => ConsoleSession.RunAsync(p.GetValue(host)!, Common.Secret(p, secret), p.GetValue(name)!, p.GetValue(from), p.GetValue(follow), ct)));
        return cmd;
    }

    private static Command Simple(string verb, string description, Func<HostClient, string, CancellationToken, Task<VmStatus?>> action)
    {
        var name = new Argument<string>("NAME");
        var host = Common.HostOption();
        var secret = Common.SecretOption();
        var json = Common.JsonOption();
        var cmd = new Command(verb, description) { name, host, secret, json };
        cmd.SetAction((ParseResult p, CancellationToken ct) => Cli.GuardAsync(async () =>
        {
            using var client = new HostClient(p.GetValue(host)!, Common.Secret(p, secret));
            VmStatus? status = await action(client, p.GetValue(name)!, ct);
            if (status is not null)
            {
                Print(status, p.GetValue(json));
            }

            return 0;
        }));
        return cmd;
    }

    private static void Print(VmStatus s, bool json)
    {
        if (json)
        {
            System.Console.Out.WriteLine(JsonSerializer.Serialize(s, ApiJson.Options));
            return;
        }

        System.Console.Out.WriteLine($"{s.Name}: {VmInstance.Describe(s.State)}{(s.WaitingOnNetwork ? " (waiting on network)" : "")} on {s.Host}, {s.InstructionsRetired:N0} instructions, {s.MemoryBytes >> 20} MiB{(s.Icount ? ", icount" : "")}"
            + (s.StopAt is ulong at ? $", stops at {at:N0}" : "")
            + (s.ExitStatus is int e ? $", exit status {e}" : "")
            + (s.Digest is string d ? $"\ndigest: {d}" : "")
            + (s.Detail is string detail ? $"\n{detail}" : ""));
    }
}
