using BenchmarkDotNet.Attributes;
using Ferry.Benchmarks.Common;
using Ferry.Machine.Board;
using Ferry.Machine.Cpu;

namespace Ferry.Benchmarks.Machine;

/// <summary>
/// A Linux boot (Debian's OpenSBI fw_dynamic, the guests/linux kernel and initramfs, 256 MiB,
/// icount) from reset to <c>ferry-init: ready</c> on the console, per engine. One operation is
/// one boot of a fresh machine, so the translator pays for translating
/// and compiling everything it translates; about 23 M guest instructions.
/// </summary>
public class LinuxBootBenchmarks
{
    private const string Ready = "ferry-init: ready";

    private LinuxBootFiles _files = null!;
    private VirtMachine? _machine;

    [Params(ExecutionEngine.Interpreter, ExecutionEngine.Translator)]
    public ExecutionEngine Engine { get; set; } = ExecutionEngine.Interpreter;

    [GlobalSetup]
    public void Setup()
    {
        string bin = Path.Combine(Repo.Root, "guests", "linux", "bin");
        _files = new LinuxBootFiles
        {
            Firmware = File.ReadAllBytes(Path.Combine(Repo.Root, "guests", "firmware", "fw_dynamic.bin")),
            Kernel = File.ReadAllBytes(Path.Combine(bin, "Image.gz")),
            Initrd = File.ReadAllBytes(Path.Combine(bin, "initramfs.cpio.gz")),
            CommandLine = LinuxBoot.DefaultCommandLine,
        };
    }

    /// <summary>One boot of a fresh machine (building it and loading the images included, the same for both engines).</summary>
    [Benchmark]
    public ulong BootToReady()
    {
        _machine?.Dispose();
        _machine = new VirtMachine(new MachineConfig { MemorySize = Guests.MemorySize, Icount = true, IdleSleep = false });
        _machine.Hart.Engine = Engine;
        LinuxBoot.Load(_machine, _files);
        return Guests.RunUntilConsole(_machine, Ready, 100_000_000, 250_000);
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
