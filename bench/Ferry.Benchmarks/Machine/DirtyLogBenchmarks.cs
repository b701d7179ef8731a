using BenchmarkDotNet.Attributes;
using Ferry.Benchmarks.Common;
using Ferry.Machine.Board;
using Ferry.Machine.Memory;

namespace Ferry.Benchmarks.Machine;

/// <summary>
/// The cost of dirty-page tracking (the pre-copy rounds' dirty log) on the hart's software TLB.
/// The write TLB only holds pages already marked dirty, so after GuestMemory.CollectDirtyLog
/// (which drains the bitmap and flushes the write entries) the first store to each page takes
/// the slow path, marks the page and refills the entry.
///
///   CollectDirtyLog      drain the 256 MiB machine's dirty bitmap + flush the write TLB; op = one RAM page
///   PassAfterCollect     CollectDirtyLog, then one pass of the `dirty` guest over its region
///                        (every page written, 8 words each); op = one page written
///   PassWithoutCollect   the same pass with no collection; op = one page written
///
/// Two region sizes: 64 MiB (16384 pages: larger than the 1024-entry direct-mapped TLB, so every
/// page misses by capacity anyway and the refill finds it dirty or not) and 2 MiB (512 pages:
/// TLB-resident, so without a collection every store hits and PassAfterCollect - PassWithoutCollect
/// is the whole per-page price of a dirty-log round to the guest).
/// </summary>
public abstract class DirtyLogBenchmarksBase
{
    protected const int RamPages = (int)(Guests.MemorySize >> GuestMemory.PageShift);

    private VirtMachine _machine = null!;
    private PageBitmap _into = null!;
    private ulong _instructionsPerPass;

    protected abstract int RegionMiB { get; }

    [GlobalSetup]
    public void Setup()
    {
        _machine = Guests.Boot(Guests.Image("dirty", ("size_mib", (ulong)RegionMiB), ("pattern", 0), ("rate", 0), ("passes", 0)));
        _into = new PageBitmap(_machine.Memory.PageCount);
        ulong pass1 = Guests.RunUntilConsole(_machine, "pass 1\n", 50_000_000, 10);
        ulong pass2 = Guests.RunUntilConsole(_machine, "pass 2\n", 50_000_000, 10);
        _instructionsPerPass = pass2 - pass1;

        // Check: one pass's worth of instructions after a collection dirties every page of the region (+ stack/data).
        _machine.Memory.CollectDirtyLog(_into);
        _machine.Run(_machine.Hart.InstructionsRetired + _instructionsPerPass);
        int dirtied = _machine.Memory.Dirty.PopCount();
        Console.WriteLine($"// dirty: {_instructionsPerPass} instructions per {RegionMiB} MiB pass (+-10), {dirtied} pages dirtied by one pass (region {RegionMiB << 8} pages)");
    }

    protected void Collect() => _machine.Memory.CollectDirtyLog(_into);

    protected ulong Pass(bool collect)
    {
        if (collect)
        {
            _machine.Memory.CollectDirtyLog(_into);
        }

        _machine.Run(_machine.Hart.InstructionsRetired + _instructionsPerPass);
        return _machine.Hart.InstructionsRetired;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        string text = Guests.ConsoleText(_machine);
        if (text.Contains("CORRUPT", StringComparison.Ordinal))
        {
            throw new InvalidOperationException("dirty reported corruption:\n" + text);
        }

        _machine.Dispose();
    }
}

/// <summary>64 MiB region: larger than the TLB (see <see cref="DirtyLogBenchmarksBase"/>).</summary>
[MemoryDiagnoser]
public class DirtyLogBenchmarks : DirtyLogBenchmarksBase
{
    public const int Pages = 64 << 8;

    protected override int RegionMiB => 64;

    [Benchmark(OperationsPerInvoke = RamPages)]
    public void CollectDirtyLog() => Collect();

    [Benchmark(OperationsPerInvoke = Pages)]
    public ulong PassAfterCollect() => Pass(collect: true);

    [Benchmark(OperationsPerInvoke = Pages)]
    public ulong PassWithoutCollect() => Pass(collect: false);
}

/// <summary>2 MiB region: TLB-resident (see <see cref="DirtyLogBenchmarksBase"/>).</summary>
[MemoryDiagnoser]
public class DirtyLogTlbResidentBenchmarks : DirtyLogBenchmarksBase
{
    public const int Pages = 2 << 8;

    protected override int RegionMiB => 2;

    [Benchmark(OperationsPerInvoke = Pages)]
    public ulong PassAfterCollect() => Pass(collect: true);

    [Benchmark(OperationsPerInvoke = Pages)]
    public ulong PassWithoutCollect() => Pass(collect: false);
}
