using System.Text;
using Ferry.Machine.Board;
using Ferry.Machine.Cpu;

namespace Ferry.Benchmarks.Common;

/// <summary>Guest images and machines for the benchmarks (256 MiB, icount clock, no idle sleeping).</summary>
internal static class Guests
{
    public const ulong MemorySize = 256UL << 20;

    /// <summary>An image from guests/bin with its configuration block patched.</summary>
    public static GuestImage Image(string name, params (string Key, ulong Value)[] config)
        => GuestImage.Load(Repo.Guest(name)).WithConfig(config.Select(c => new KeyValuePair<string, ulong>(c.Key, c.Value)));

    public static VirtMachine Boot(GuestImage image, ExecutionEngine engine = ExecutionEngine.Interpreter)
    {
        var machine = new VirtMachine(new MachineConfig { MemorySize = MemorySize, Icount = true, IdleSleep = false });
        machine.Hart.Engine = engine;
        machine.Load(image);
        return machine;
    }

    /// <summary>The translator's cost and cache size in one line.</summary>
    public static string Describe(TranslationStatistics t) =>
        $"translator: {t.Blocks:N0} blocks ({t.Instructions:N0} guest instructions, {t.IlBytes:N0} B of IL) translated and compiled in {t.Time.TotalMilliseconds:F1} ms "
        + $"({(t.Blocks == 0 ? 0 : t.Time.TotalMicroseconds / t.Blocks):F1} us per block, JIT included; {t.Promoted:N0} of them promotions to the optimized tier), {t.CachedBlocks:N0} cached, {t.Shared:N0} taken from the shared translations";

    public static string ConsoleText(VirtMachine machine) => Encoding.ASCII.GetString(machine.Console.Read(0).Bytes);

    /// <summary>Runs until the console holds <paramref name="text"/>; returns the instructions retired then (to within <paramref name="step"/>).</summary>
    public static ulong RunUntilConsole(VirtMachine machine, string text, ulong limit, ulong step = 1_000_000)
    {
        while (!ConsoleText(machine).Contains(text, StringComparison.Ordinal))
        {
            if (machine.Hart.InstructionsRetired >= limit || machine.Exit is not null)
            {
                throw new InvalidOperationException($"'{text}' did not appear within {limit} instructions; console:\n{ConsoleText(machine)}");
            }

            machine.Run(machine.Hart.InstructionsRetired + step);
        }

        return machine.Hart.InstructionsRetired;
    }

    /// <summary>Runs an image to its exit under Ferry; returns the exact retired instruction count.</summary>
    public static ulong RetiredToExit(GuestImage image, ulong limit = 50_000_000)
    {
        using VirtMachine machine = Boot(image);
        RunOutcome outcome = machine.Run(limit);
        if (outcome != RunOutcome.GuestExited || machine.Exit!.Status != 0)
        {
            throw new InvalidOperationException($"{image.Name} did not exit 0 within {limit} instructions ({outcome}); console:\n{ConsoleText(machine)}");
        }

        return machine.Hart.InstructionsRetired;
    }
}
