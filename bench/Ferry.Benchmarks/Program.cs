using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using Ferry.Benchmarks.Common;
using Ferry.Benchmarks.Machine;
using Ferry.Benchmarks.Migration;

namespace Ferry.Benchmarks;

/// <summary>
/// dotnet run -c Release --project bench/Ferry.Benchmarks -- --filter '*' [--quick] [other BenchmarkDotNet options]
///
/// --quick   a short job (1 launch, 2 warm-up and 5 measured iterations of ~250 ms, no unrolling)
///           that runs everything in a few minutes; without it BenchmarkDotNet's default job.
/// After the run, Program prints the Ferry vs QEMU table (and writes it to
/// BenchmarkDotNet.Artifacts/results/ferry-vs-qemu.md).
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        bool quick = args.Contains("--quick");
        args = args.Where(a => a != "--quick").ToArray();

        IConfig config = DefaultConfig.Instance.AddDiagnoser(MemoryDiagnoser.Default);
        if (quick)
        {
            config = config.AddJob(Job.Default
                .WithId("Quick")
                .WithLaunchCount(1)
                .WithWarmupCount(2)
                .WithIterationCount(5)
                .WithIterationTime(Perfolizer.Horology.TimeInterval.FromMilliseconds(250))
                .WithUnrollFactor(1)
                .AsDefault());
        }

        // FirstRunBenchmarks is cold-start by design (a process per measurement): --quick's default
        // job would warm it up, so it runs only without --quick.
        bool firstRun = !quick && args.Any(a => a.Contains("FirstRun", StringComparison.Ordinal) || a.Trim('\'', '"') == "*");
        if (firstRun)
        {
            FirstRunBenchmarks.PrepareSnapshot();
        }
        else if (args.Any(a => a.Contains("FirstRun", StringComparison.Ordinal)))
        {
            Console.WriteLine("// FirstRunBenchmarks runs only without --quick (each of its measurements is a new process).");
        }

        var types = new List<Type> { typeof(HartBenchmarks), typeof(LinuxBootBenchmarks), typeof(LinuxBootOnAHostBenchmarks), typeof(TranslationCostBenchmarks), typeof(DirtyLogBenchmarks), typeof(DirtyLogTlbResidentBenchmarks), typeof(PageSenderBenchmarks), typeof(WorkingSetBenchmarks) };
        if (firstRun)
        {
            types.Add(typeof(FirstRunBenchmarks));
        }

        if (Qemu.Available)
        {
            types.Add(typeof(QemuBaselineBenchmarks));
        }
        else
        {
            Console.WriteLine($"// {Qemu.Executable} is not on PATH: the QEMU baseline is skipped.");
        }

        IEnumerable<Summary> summaries = BenchmarkSwitcher.FromTypes(types.ToArray()).Run(args, config).ToList();
        string? table = ComparisonTable.Build(summaries.ToList());
        if (table is not null)
        {
            Console.WriteLine();
            Console.WriteLine(table);
            string dir = summaries.Select(s => s.ResultsDirectoryPath).FirstOrDefault(d => !string.IsNullOrEmpty(d)) ?? ".";
            Directory.CreateDirectory(dir);
            File.WriteAllText(Path.Combine(dir, "ferry-vs-qemu.md"), table);
        }

        return summaries.Any(s => s.HasCriticalValidationErrors || s.Reports.Any(r => !r.Success)) ? 1 : 0;
    }
}
