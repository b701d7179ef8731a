using System.Text;
using Ferry.Machine.Board;
using Ferry.Machine.Cpu;

namespace Ferry.Machine.Tests.Support;

/// <summary>The result of running a guest image under Ferry.</summary>
internal sealed record FerryResult(RunOutcome Outcome, int? ExitStatus, byte[] Console, ulong Instructions)
{
    public string Text => Encoding.ASCII.GetString(Console);

    public override string ToString() => $"{Outcome} status={ExitStatus?.ToString() ?? "-"} after {Instructions} instructions; console:\n{Text}";
}

internal static class GuestRunner
{
    /// <summary>Guest RAM for the small configs the tests use (the guests' work regions start near 0x8000_a000).</summary>
    public const ulong DefaultMemory = 32UL << 20;

    public static GuestImage Load(string name, params (string Key, ulong Value)[] config)
    {
        GuestImage image = GuestImage.Load(Repo.Guest(name));
        return config.Length == 0 ? image : image.WithConfig(config.Select(c => new KeyValuePair<string, ulong>(c.Key, c.Value)));
    }

    public static VirtMachine NewMachine(GuestImage image, ulong memory = DefaultMemory, bool icount = true, ExecutionEngine? engine = null)
    {
        VirtMachine machine = Engines.Use(new VirtMachine(new MachineConfig { MemorySize = memory, Icount = icount, IdleSleep = false }), engine);
        machine.Load(image);
        return machine;
    }

    /// <summary>Runs to exit (or the instruction limit), with a wall-clock watchdog that stops a hung run.</summary>
    public static FerryResult Run(
        GuestImage image, ulong memory = DefaultMemory, bool icount = true, ulong maxInstructions = 500_000_000, TimeSpan? timeout = null, ExecutionEngine? engine = null)
    {
        using VirtMachine machine = NewMachine(image, memory, icount, engine);
        RunOutcome outcome = RunWithWatchdog(machine, maxInstructions, timeout ?? TimeSpan.FromSeconds(20));
        return new FerryResult(outcome, machine.Exit?.Status, machine.Console.Read(0).Bytes, machine.Hart.InstructionsRetired);
    }

    public static RunOutcome RunWithWatchdog(VirtMachine machine, ulong stopAtInstructions, TimeSpan timeout)
    {
        using var watchdog = new Timer(_ => machine.RequestStop(), null, timeout, Timeout.InfiniteTimeSpan);
        return machine.Run(stopAtInstructions);
    }

    /// <summary>Runs to an instruction count; fails (instead of hanging) if the watchdog has to stop it.</summary>
    public static RunOutcome RunTo(VirtMachine machine, ulong stopAtInstructions)
    {
        RunOutcome outcome = RunWithWatchdog(machine, stopAtInstructions, TimeSpan.FromSeconds(30));
        Assert.True(outcome != RunOutcome.Stopped, $"run stopped by the watchdog at {machine.Hart.InstructionsRetired} instructions, pc=0x{machine.Hart.Pc:x}");
        return outcome;
    }
}
