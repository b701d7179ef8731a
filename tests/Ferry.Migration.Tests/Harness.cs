using Ferry.Machine.Board;
using Ferry.Machine.State;
using Ferry.Migration.Local;
using Ferry.Migration.Metrics;

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

    /// <summary>The unmigrated reference: digest and console at exactly <paramref name="stopAt"/> instructions.</summary>
    public static (string Digest, byte[] Console) Reference(string guest, string? config, ulong memory, ulong stopAt)
    {
        using VirtMachine m = Boot(guest, config, memory);
        m.Run(stopAt);
        return (StateDigest.Compute(m), m.Console.Read(0).Bytes);
    }

    /// <summary>Starts a VM that will stop at <paramref name="stopAt"/>, waits until it has retired <paramref name="runFirst"/>.</summary>
    public static async Task<LocalVm> StartAsync(string guest, string? config, ulong memory, ulong runFirst, ulong stopAt)
    {
        var source = new LocalVm("vm1", Boot(guest, config, memory), stopAt, TimeSpan.FromMilliseconds(20));
        source.Start();
        while (source.Machine.Hart.InstructionsRetired < runFirst && source.Runner.IsRunning)
        {
            await Task.Delay(2);
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
