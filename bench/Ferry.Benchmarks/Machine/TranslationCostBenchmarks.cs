using BenchmarkDotNet.Attributes;
using Ferry.Benchmarks.Common;
using Ferry.Machine.Board;
using Ferry.Machine.Cpu;
using Ferry.Machine.Cpu.Translation;

namespace Ferry.Benchmarks.Machine;

/// <summary>
/// What one region costs to translate and compile, JIT included, per tier: the regions are those
/// a Linux boot translates at threshold 1,024 (GlobalSetup boots to <c>ferry-init: ready</c> and
/// keeps the first 200). One operation is one region; an invocation compiles all 200 again,
/// the quick tier in batches of 16 per type as its worker does.
/// </summary>
public class TranslationCostBenchmarks
{
    private const int Batch = 16;
    private const int Regions = 200;

    private List<TranslationRequest> _regions = null!;

    public enum Tier
    {
        Quick,
        Optimized,
    }

    [Params(Tier.Quick, Tier.Optimized)]
    public Tier Compile { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        string bin = Path.Combine(Repo.Root, "guests", "linux", "bin");
        var files = new LinuxBootFiles
        {
            Firmware = File.ReadAllBytes(Path.Combine(Repo.Root, "guests", "firmware", "fw_dynamic.bin")),
            Kernel = File.ReadAllBytes(Path.Combine(bin, "Image.gz")),
            Initrd = File.ReadAllBytes(Path.Combine(bin, "initramfs.cpio.gz")),
            CommandLine = LinuxBoot.DefaultCommandLine,
        };
        using var machine = new VirtMachine(new MachineConfig { MemorySize = Guests.MemorySize, Icount = true, IdleSleep = false });
        machine.Hart.TranslationThreshold = 1024;
        machine.Hart.PromotionThreshold = long.MaxValue;
        machine.Hart.TranslateInBackground = false;
        LinuxBoot.Load(machine, files);
        Guests.RunUntilConsole(machine, "ferry-init: ready", 100_000_000, 250_000);
        _regions = machine.Hart.CachedRegions();
        if (_regions.Count < Regions)
        {
            throw new InvalidOperationException($"the boot translated {_regions.Count} regions, fewer than the {Regions} an operation compiles");
        }

        _regions = _regions.Take(Regions).ToList();
        Console.WriteLine($"// translation cost: {_regions.Count:N0} regions of a boot, {_regions.Sum(r => r.Region.Count):N0} guest instructions");
    }

    /// <summary>Emits and compiles the regions once, with one quick tier as a hart has (Mean is per region).</summary>
    [Benchmark(OperationsPerInvoke = Regions)]
    public int TranslateRegion()
    {
        int compiled = 0;
        var quick = new QuickTier();
        List<TranslationRequest> requests = Compile == Tier.Quick ? _regions : [.. _regions.Select(r => r with { Optimize = true })];
        foreach (TranslationRequest[] batch in requests.Chunk(Batch))
        {
            TranslationWorker.Translate(quick, batch, _ => compiled++);
        }

        return compiled;
    }
}
