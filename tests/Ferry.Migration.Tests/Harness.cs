using Ferry.Machine.Board;
using Ferry.Machine.State;
using Ferry.Migration.Local;
using Ferry.Migration.Metrics;
using Ferry.Migration.Protocol;

namespace Ferry.Migration.Tests;

internal static class Harness
{
    public static string GuestPath(string name)
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Ferry.slnx")))
        {
            dir = dir.Parent;
        }

        return Path.Combine(dir?.FullName ?? throw new InvalidOperationException("repository root not found"), "guests", "bin", name + ".elf");
    }

    public static VirtMachine Boot(string guest, string? config = null, ulong memory = 64UL << 20)
    {
        GuestImage image = GuestImage.Load(GuestPath(guest));
        if (config is not null)
        {
            image = image.WithConfig(GuestImage.ParseConfig(config));
        }

        var machine = new VirtMachine(new MachineConfig { MemorySize = memory, Icount = true, IdleSleep = false });
        machine.Load(image);
        return machine;
    }

    /// <summary>Boots the built-in Linux (guests/linux on Debian's OpenSBI) in icount mode with <paramref name="commandLine"/> and <paramref name="devices"/>.</summary>
    public static VirtMachine BootLinux(string commandLine, ulong memory, MachineDevices? devices = null, bool icount = true)
    {
        string root = Path.GetDirectoryName(Path.GetDirectoryName(GuestPath("hello"))!)!; // guests/
        var machine = new VirtMachine(new MachineConfig { MemorySize = memory, Icount = icount, IdleSleep = !icount }, devices: devices);
        LinuxBoot.Load(machine, new LinuxBootFiles
        {
            Firmware = File.ReadAllBytes(Path.Combine(root, "firmware", "fw_dynamic.bin")),
            Kernel = File.ReadAllBytes(Path.Combine(root, "linux", "bin", "Image.gz")),
            Initrd = File.ReadAllBytes(Path.Combine(root, "linux", "bin", "initramfs.cpio.gz")),
            CommandLine = commandLine,
        });
        return machine;
    }

    /// <summary>Starts <paramref name="machine"/> (to stop at <paramref name="stopAt"/>), and once it has retired <paramref name="migrateAfter"/> migrates it in-process.</summary>
    public static async Task<(MigrationReport Report, LocalVm Source, LocalVm? Destination)> RunAndMigrateAsync(
        string name, VirtMachine machine, ulong migrateAfter, ulong stopAt, StrategyKind strategy)
    {
        var source = new LocalVm(name, machine, stopAt, TimeSpan.FromMilliseconds(50));
        source.Start();
        while (source.Machine.Hart.InstructionsRetired < migrateAfter && source.Runner.IsRunning)
        {
            await Task.Delay(2);
        }

        (MigrationReport report, LocalVm? destination) = await LocalMigration.RunAsync(source,
            new MigrationOptions { Strategy = strategy, DowntimeLimit = TimeSpan.FromMilliseconds(50), MaxRounds = 5 });
        return (report, source, destination);
    }

    /// <summary>The unmigrated reference: digest and console at exactly <paramref name="stopAt"/> instructions.</summary>
    public static (string Digest, byte[] Console) Reference(string guest, string? config, ulong memory, ulong stopAt)
    {
        using VirtMachine m = Boot(guest, config, memory);
        m.Run(stopAt);
        return (StateDigest.Compute(m), m.Console.Read(0).Bytes);
    }

    private static readonly Lazy<Task> Warm = new(() => LocalMigration.WarmUpAsync(
        GuestImage.Load(GuestPath("dirty")).WithConfig(GuestImage.ParseConfig("size_mib=2"))));

    /// <summary>Starts a VM that will stop at <paramref name="stopAt"/>, waits until it has retired <paramref name="runFirst"/>.</summary>
    public static async Task<LocalVm> StartAsync(string guest, string? config, ulong memory, ulong runFirst, ulong stopAt)
    {
        // As a host agent does at start-up: compile the hart and migration code first, so that
        // the guest runs at speed and working-set windows see what it really touches.
        await Warm.Value;
        var source = new LocalVm("vm1", Boot(guest, config, memory), stopAt, TimeSpan.FromMilliseconds(50));
        source.Start();
        while (source.Machine.Hart.InstructionsRetired < runFirst && source.Runner.IsRunning)
        {
            await Task.Delay(2);
        }

        // Give the working-set estimator three full windows of the guest at work.
        int windows = source.WorkingSet!.WindowsClosed;
        while (source.WorkingSet.WindowsClosed < windows + 4 && source.Runner.IsRunning)
        {
            await Task.Delay(10);
        }

        return source;
    }

    /// <summary>Migrates a running VM after <paramref name="migrateAfter"/> instructions; the destination runs on to <paramref name="stopAt"/>.</summary>
    public static async Task<(MigrationReport Report, LocalVm Source, LocalVm Destination)> MigrateAsync(
        string guest, string? config, ulong memory, ulong migrateAfter, ulong stopAt, MigrationOptions options)
    {
        LocalVm source = await StartAsync(guest, config, memory, migrateAfter, stopAt);
        (MigrationReport report, LocalVm? destination) = await LocalMigration.RunAsync(source, options);
        return (report, source, destination!);
    }
}
