using BenchmarkDotNet.Attributes;
using Ferry.Machine.Board;
using Ferry.Machine.Memory;
using Ferry.Migration.Mechanisms;

namespace Ferry.Benchmarks.Migration;

/// <summary>
/// The working-set selection that runs in hybrid's pause: a 256 MiB guest (65,536 pages) whose
/// last three windows each touched the same <see cref="Touched"/> pages (dirty-fast's 64 MiB:
/// 16,384), capped at what a 20 ms budget carries at 1 Gbit/s (578 pages), so the cap binds
/// and the pages must be ranked. One operation = one selection.
/// </summary>
[MemoryDiagnoser]
public class WorkingSetBenchmarks
{
    private VirtMachine _machine = null!;
    private WorkingSetEstimator _estimator = null!;
    private PageBitmap _candidates = null!;

    [Params(2_048, 16_384)]
    public int Touched { get; set; } = 16_384;

    [GlobalSetup]
    public void Setup()
    {
        _machine = new VirtMachine(new MachineConfig { MemorySize = 256UL << 20 });
        _estimator = new WorkingSetEstimator(_machine, TimeSpan.FromMilliseconds(100), 0);
        var random = new Random(1);
        for (int window = 0; window < 4; window++)
        {
            for (int i = 0; i < Touched; i++)
            {
                // The same run of pages every window, a few more at random (recency differs).
                _machine.Memory.Accessed.Set(i);
                _machine.Memory.Accessed.Set(random.Next(_machine.Memory.PageCount));
            }

            _estimator.CloseWindow();
        }

        _candidates = new PageBitmap(_machine.Memory.PageCount);
        for (int p = 0; p < _machine.Memory.PageCount; p++)
        {
            _candidates.Set(p);
        }
    }

    [GlobalCleanup]
    public void Cleanup() => _machine.Dispose();

    [Benchmark]
    public int Select() => _estimator.Select(3, 3, 578, _candidates).PopCount();
}
