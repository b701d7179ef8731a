using System.CommandLine;
using Ferry.Machine.Board;
using Ferry.Machine.State;

namespace Ferry.Cli;

/// <summary>`ferry run` and `ferry resume`: one VM in this process, its console on stdout.</summary>
internal static class RunCommands
{
    public static Command Run()
    {
        var image = new Argument<string>("IMAGE") { Description = "guest ELF file, or a built-in guest name (hello, idle, dirty, verify, kvstore, compute)" };
        var memory = new Option<string>("--memory") { Description = "guest RAM size (e.g. 256M, 1G)", DefaultValueFactory = _ => "256M" };
        var icount = new Option<bool>("--icount") { Description = "instruction-counted time: the run is a pure function of image and instruction count" };
        var noIdleSleep = new Option<bool>("--no-idle-sleep") { Description = "with --icount, skip WFI idle time at once instead of waiting it out" };
        var config = new Option<string?>("--config") { Description = "guest configuration block values, e.g. size_mib=16,passes=3" };
        var (maxInstructions, digest, save) = CommonOptions();

        var cmd = new Command("run", "Run a guest in this process; exits with the guest's status (0 when it stops at --max-instructions)")
        {
            image, memory, icount, noIdleSleep, config, maxInstructions, digest, save,
        };
        cmd.SetAction((ParseResult p, CancellationToken ct) => Task.FromResult(Cli.Guard(() =>
        {
            GuestImage guest = GuestCatalog.Resolve(p.GetValue(image)!, p.GetValue(config));
            var machineConfig = new MachineConfig
            {
                MemorySize = MachineConfig.ParseSize(p.GetValue(memory)!),
                Icount = p.GetValue(icount),
                IdleSleep = !p.GetValue(noIdleSleep),
            };
            var console = new ConsoleLog { Echo = System.Console.OpenStandardOutput() };
            using var machine = new VirtMachine(machineConfig, console);
            machine.Load(guest);
            return Execute(machine, p.GetValue(maxInstructions), p.GetValue(digest), p.GetValue(save), ct);
        })));
        return cmd;
    }

    public static Command Resume()
    {
        var file = new Argument<string>("SNAPSHOT") { Description = "a snapshot written by --save" };
        var (maxInstructions, digest, save) = CommonOptions();
        var cmd = new Command("resume", "Restore a snapshot and continue running it")
        {
            file, maxInstructions, digest, save,
        };
        cmd.SetAction((ParseResult p, CancellationToken ct) => Task.FromResult(Cli.Guard(() =>
        {
            var console = new ConsoleLog { Echo = System.Console.OpenStandardOutput() };
            using VirtMachine machine = Snapshot.Load(p.GetValue(file)!, console);
            return Execute(machine, p.GetValue(maxInstructions), p.GetValue(digest), p.GetValue(save), ct);
        })));
        return cmd;
    }

    private static (Option<ulong?> Max, Option<bool> Digest, Option<string?> Save) CommonOptions() =>
    (
        new Option<ulong?>("--max-instructions") { Description = "stop when this many instructions have retired in total (exit 0)" },
        new Option<bool>("--digest") { Description = "print 'digest: <hex>' (RAM, hart and devices) as the last line" },
        new Option<string?>("--save") { Description = "write a snapshot of the machine to this file when it stops (also on Ctrl-C)" }
    );

    private static int Execute(VirtMachine machine, ulong? maxInstructions, bool digest, string? save, CancellationToken ct)
    {
        using CancellationTokenRegistration reg = ct.Register(machine.RequestStop);
        RunOutcome outcome = machine.Run(maxInstructions ?? ulong.MaxValue);
        machine.Console.Flush();
        if (save is not null)
        {
            Snapshot.Save(machine, save);
            System.Console.Error.WriteLine($"ferry: snapshot written to {save} at {machine.Hart.InstructionsRetired} instructions");
        }

        if (digest)
        {
            System.Console.Out.WriteLine($"digest: {StateDigest.Compute(machine)}");
        }

        return outcome switch
        {
            RunOutcome.GuestExited => machine.Exit!.Status,
            RunOutcome.InstructionLimit => 0,
            _ => 130,
        };
    }
}
