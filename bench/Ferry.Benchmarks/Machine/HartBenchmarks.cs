using BenchmarkDotNet.Attributes;
using Ferry.Benchmarks.Common;
using Ferry.Machine.Board;
using Ferry.Machine.Cpu;

namespace Ferry.Benchmarks.Machine;

/// <summary>
/// Guest instructions per second of each engine, the interpreter and the translator (Hart.Run
/// driven by VirtMachine.Run, the production path) on a guest already in its steady state. One operation = one guest
/// instruction, so the Mean column is ns per instruction and 1000 / Mean is MIPS.
///
///   compute-alu    compute kernel=0 (mul/divu/remuw/shifts/xor/add, a branch), 20 insns/iteration
///   compute-mem    compute kernel=1 (LCG-indexed ld/sd + sequential lw/lbu/sw/sb/lh), 20 insns/iteration
///   kvstore        kvstore with its default 192 MiB table, after its populate phase (~195 M
///                  instructions run in GlobalSetup): hash-table gets/puts on a 4 MiB hot set
///
/// Each invocation continues the same guest for <see cref="Instructions"/> more instructions
/// (iterations = 2^40, ops = 0: the guests never finish during the benchmark).
/// </summary>
[MemoryDiagnoser]
public class HartBenchmarks
{
    /// <summary>Guest instructions per invocation (~0.1-0.3 s at 100 MIPS).</summary>
    public const int Instructions = 20_000_000;

    private VirtMachine _machine = null!;

    [Params("compute-alu", "compute-mem", "kvstore")]
    public string Workload { get; set; } = "compute-alu";

    [Params(ExecutionEngine.Interpreter, ExecutionEngine.Translator)]
    public ExecutionEngine Engine { get; set; } = ExecutionEngine.Interpreter;

    [GlobalSetup]
    public void Setup()
    {
        _machine = Create(Workload, Engine);
    }

    /// <summary>A machine running <paramref name="workload"/> on <paramref name="engine"/>, past its setup phase.</summary>
    internal static VirtMachine Create(string workload, ExecutionEngine engine)
    {
        VirtMachine machine;
        switch (workload)
        {
            case "compute-alu":
            case "compute-mem":
                ulong kernel = workload == "compute-alu" ? 0UL : 1UL;
                machine = Guests.Boot(Guests.Image("compute", ("kernel", kernel), ("iterations", 1UL << 40)), engine);
                Guests.RunUntilConsole(machine, "compute: kernel=", 5_000_000, 100_000);
                machine.Run(machine.Hart.InstructionsRetired + 2_000_000); // past kernel 1's array init, into the loop
                break;
            case "kvstore":
                machine = Guests.Boot(Guests.Image("kvstore", ("ops", 0)), engine);
                ulong populated = Guests.RunUntilConsole(machine, "populated", 1_000_000_000, 10_000_000);
                Console.WriteLine($"// kvstore populated after {populated} instructions");
                break;
            default:
                throw new ArgumentException($"unknown workload {workload}", nameof(workload));
        }

        // One warm run, then check that a run allocates nothing (the hot loop's promise).
        machine.Run(machine.Hart.InstructionsRetired + 1_000_000);
        long before = GC.GetAllocatedBytesForCurrentThread();
        machine.Run(machine.Hart.InstructionsRetired + 1_000_000);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Console.WriteLine($"// {workload} ({engine}): {allocated} bytes allocated by VirtMachine.Run over 1,000,000 instructions");
        return machine;
    }

    [Benchmark(OperationsPerInvoke = Instructions)]
    public ulong Run()
    {
        VirtMachine m = _machine;
        RunOutcome outcome = m.Run(m.Hart.InstructionsRetired + Instructions);
        if (outcome != RunOutcome.InstructionLimit)
        {
            throw new InvalidOperationException($"{Workload} stopped early: {outcome}, exit {m.Exit}");
        }

        return m.Hart.InstructionsRetired;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        string text = Guests.ConsoleText(_machine);
        if (text.Contains("CORRUPT", StringComparison.Ordinal) || text.Contains("TRAP", StringComparison.Ordinal))
        {
            throw new InvalidOperationException($"{Workload} reported an error:\n{text}");
        }

        Console.WriteLine($"// {Workload} ({Engine}): {_machine.Hart.InstructionsRetired} instructions retired in total");
        if (Engine == ExecutionEngine.Translator)
        {
            Console.WriteLine($"// {Workload}: {Guests.Describe(_machine.Hart.TranslationStatistics)}");
        }

        _machine.Dispose();
    }
}
