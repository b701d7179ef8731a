using BenchmarkDotNet.Attributes;
using Ferry.Benchmarks.Common;
using Ferry.Machine.Board;
using Ferry.Machine.Cpu;
using Ferry.Machine.Cpu.Translation;

namespace Ferry.Benchmarks.Machine;

/// <summary>
/// A Linux boot (Debian's OpenSBI fw_dynamic, the guests/linux kernel and initramfs, 256 MiB,
/// icount) from reset to <c>ferry-init: ready</c> on the console, per engine. One operation is
/// one boot of a fresh machine, so the translator pays for translating
/// and compiling everything it translates; about 23 M guest instructions.
/// </summary>
public class LinuxBootBenchmarks
{
    internal const string Ready = "ferry-init: ready";

    private LinuxBootFiles _files = null!;
    private VirtMachine? _machine;

    [Params(ExecutionEngine.Interpreter, ExecutionEngine.Translator)]
    public ExecutionEngine Engine { get; set; } = ExecutionEngine.Interpreter;

    [GlobalSetup]
    public void Setup() => _files = Files();

    /// <summary>The repository's Linux boot: Debian's fw_dynamic, the guests/linux kernel and initramfs, the default command line.</summary>
    internal static LinuxBootFiles Files()
    {
        string bin = Path.Combine(Repo.Root, "guests", "linux", "bin");
        return new LinuxBootFiles
        {
            Firmware = File.ReadAllBytes(Path.Combine(Repo.Root, "guests", "firmware", "fw_dynamic.bin")),
            Kernel = File.ReadAllBytes(Path.Combine(bin, "Image.gz")),
            Initrd = File.ReadAllBytes(Path.Combine(bin, "initramfs.cpio.gz")),
            CommandLine = LinuxBoot.DefaultCommandLine,
        };
    }

    /// <summary>One boot of a fresh machine (building it and loading the images included, the same for both engines).</summary>
    [Benchmark]
    public ulong BootToReady() => Boot(ref _machine, _files, Engine, null);

    /// <summary>Replaces <paramref name="machine"/> by a fresh one booted to <see cref="Ready"/> (the machine's build and the images' load included).</summary>
    internal static ulong Boot(ref VirtMachine? machine, LinuxBootFiles files, ExecutionEngine engine, TranslationCache? shared)
    {
        machine?.Dispose();
        machine = new VirtMachine(new MachineConfig { MemorySize = Guests.MemorySize, Icount = true, IdleSleep = false });
        machine.Hart.Engine = engine;
        machine.Hart.SharedTranslations = shared;
        LinuxBoot.Load(machine, files);
        return Guests.RunUntilConsole(machine, Ready, 100_000_000, 250_000);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        if (_machine is not null)
        {
            Console.WriteLine($"// Linux boot ({Engine}): '{Ready}' after {_machine.Hart.InstructionsRetired:N0} instructions");
            if (Engine == ExecutionEngine.Translator)
            {
                Console.WriteLine($"// Linux boot: {Guests.Describe(_machine.Hart.TranslationStatistics)}");
            }

            _machine.Dispose();
        }
    }
}

/// <summary>
/// The same boot with the translator on a host agent: the machines share the process's
/// translations (<see cref="TranslationCache"/>), which GlobalSetup fills as `ferry host` does at
/// start (<see cref="LinuxWarmUp"/>: one boot at threshold 256), and which every boot then adds to.
/// Compare with <see cref="LinuxBootBenchmarks"/> (a cold translator, the interpreter) in the same run.
/// </summary>
public class LinuxBootOnAHostBenchmarks
{
    private LinuxBootFiles _files = null!;
    private TranslationCache _cache = null!;
    private VirtMachine? _machine;

    [GlobalSetup]
    public void Setup()
    {
        _files = LinuxBootBenchmarks.Files();
        _cache = new TranslationCache();
        if (!LinuxWarmUp.Boot(_files with { CommandLine = LinuxBoot.DefaultCommandLine + " ferry.workload=idle" }, _cache).Ready)
        {
            throw new InvalidOperationException("the warm-up boot did not reach ready");
        }
    }

    /// <summary>One boot of a fresh machine on the host (building it and loading the images included).</summary>
    [Benchmark]
    public ulong BootToReady() => LinuxBootBenchmarks.Boot(ref _machine, _files, ExecutionEngine.Translator, _cache);

    [GlobalCleanup]
    public void Cleanup()
    {
        if (_machine is not null)
        {
            Console.WriteLine($"// Linux boot on a host: {Guests.Describe(_machine.Hart.TranslationStatistics)}; the cache holds {_cache.Count} regions ({_cache.Hits:N0} hits, {_cache.Misses:N0} misses)");
            _machine.Dispose();
        }
    }
}
