using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Engines;
using Ferry.Benchmarks.Common;
using Ferry.Machine.Board;
using Ferry.Machine.Cpu.Translation;
using Ferry.Machine.State;

namespace Ferry.Benchmarks.Machine;

/// <summary>
/// A Linux VM's first 2 M instructions after a restore (as after a migration) in a process that
/// has run no Linux before: each launch is a new process with one invocation (ColdStart), so the
/// JIT's first compiles of the machine's paths fall inside the measurement, as they fall in the
/// first milliseconds after a host's first incoming migration; with <see cref="WarmUp"/>, the
/// process first boots Linux in a scratch machine (<see cref="LinuxWarmUp"/>, what `ferry host`
/// does at start), leaving its translations in a cache the restored machine shares, as a host's VMs do. The snapshot (Linux running kvstore at 150 M instructions, translator) is made
/// by the parent benchmark process (<see cref="PrepareSnapshot"/>), so the measured ones stay cold.
/// </summary>
[SimpleJob(RunStrategy.ColdStart, launchCount: 10, warmupCount: 0, iterationCount: 1, invocationCount: 1)]
public class FirstRunBenchmarks
{
    public const string SnapshotVariable = "FERRY_FIRST_RUN_SNAPSHOT";
    private const ulong SnapshotAt = 150_000_000;
    private const ulong Measured = 2_000_000;

    private byte[] _snapshot = null!;
    private TranslationCache? _cache;
    private VirtMachine? _machine;

    [Params(false, true)]
    public bool WarmUp { get; set; }

    /// <summary>Makes the snapshot the launches restore, in this (parent) process, and names it in the environment they inherit.</summary>
    public static void PrepareSnapshot()
    {
        string path = Path.Combine(Path.GetTempPath(), $"ferry-first-run-{Environment.ProcessId}.snap");
        using var machine = new VirtMachine(new MachineConfig { MemorySize = Guests.MemorySize });
        LinuxBoot.Load(machine, Files(LinuxBoot.DefaultCommandLine + " ferry.workload=kvstore"));
        machine.Run(SnapshotAt);
        Snapshot.Save(machine, path);
        Environment.SetEnvironmentVariable(SnapshotVariable, path);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => File.Delete(path);
    }

    private static LinuxBootFiles Files(string commandLine) => LinuxBootBenchmarks.Files() with { CommandLine = commandLine };

    [GlobalSetup]
    public void Setup()
    {
        string path = Environment.GetEnvironmentVariable(SnapshotVariable)
            ?? throw new InvalidOperationException($"{SnapshotVariable} is not set: run FirstRunBenchmarks through Program, which makes the snapshot");
        _snapshot = File.ReadAllBytes(path);
        _cache = WarmUp ? new TranslationCache() : null;
        if (WarmUp && !LinuxWarmUp.Boot(Files(LinuxBoot.DefaultCommandLine + " ferry.workload=idle"), _cache).Ready)
        {
            throw new InvalidOperationException("the warm-up boot did not reach ready");
        }
    }

    [IterationSetup]
    public void Restore()
    {
        _machine?.Dispose();
        _machine = Snapshot.Load(_snapshot);
        _machine.Hart.SharedTranslations = _cache; // as on a host: what its warm-up boot translated
    }

    /// <summary>The restored VM's first 2 M instructions.</summary>
    [Benchmark]
    public ulong FirstInstructions()
    {
        _machine!.Run(_machine.Hart.InstructionsRetired + Measured);
        return _machine.Hart.InstructionsRetired;
    }

    [GlobalCleanup]
    public void Cleanup() => _machine?.Dispose();
}
