using System.Globalization;
using System.Text;
using BenchmarkDotNet.Reports;
using Ferry.Benchmarks.Common;
using Ferry.Benchmarks.Machine;
using Ferry.Benchmarks.Migration;
using Ferry.Machine.Cpu;
using Ferry.Machine.Memory;

namespace Ferry.Benchmarks;

/// <summary>
/// The small tables printed after a run: Ferry vs QEMU MIPS per compute kernel (QEMU's loop
/// time = QemuLoop - QemuStartup, its instruction count exact from Ferry's retired count of the
/// same images), kvstore MIPS, and page sender throughput against a 1 Gbit/s link.
/// </summary>
internal static class ComparisonTable
{
    private const double GigabitBytesPerSecond = 1e9 / 8;

    public static string? Build(IReadOnlyList<Summary> summaries)
    {
        BenchmarkReport[] reports = summaries.SelectMany(s => s.Reports).Where(r => r.Success && r.ResultStatistics is not null).ToArray();
        if (reports.Length == 0)
        {
            return null;
        }

        var sb = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;

        double? FerryNsPerInsn(string workload, ExecutionEngine engine) => Mean(reports, typeof(HartBenchmarks), "Run", ("Workload", workload), ("Engine", engine));
        string Mips(double? ns) => ns is { } n ? (1000 / n).ToString("F1", inv) : "-";
        string Ratio(double? a, double? b) => a is { } x && b is { } y ? (x / y).ToString("F3", inv) : "-";

        if (reports.Any(r => r.BenchmarkCase.Descriptor.Type == typeof(HartBenchmarks) || r.BenchmarkCase.Descriptor.Type == typeof(QemuBaselineBenchmarks)))
        {
            sb.AppendLine("## Ferry vs QEMU (guest MIPS, one core)");
            sb.AppendLine();
            sb.AppendLine("| workload | interpreter MIPS | translator MIPS | QEMU MIPS | translator / interpreter | translator / QEMU | interpreter / QEMU | loop instructions (exact) | QEMU loop time |");
            sb.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
            foreach ((string workload, int kernel) in new[] { ("compute-alu", 0), ("compute-mem", 1), ("kvstore", -1) })
            {
                double? interpreterNs = FerryNsPerInsn(workload, ExecutionEngine.Interpreter);
                double? translatorNs = FerryNsPerInsn(workload, ExecutionEngine.Translator);
                double? interpreterMips = interpreterNs is { } i ? 1000 / i : null;
                double? translatorMips = translatorNs is { } t ? 1000 / t : null;
                double? qemuMips = null;
                string exact = "-", time = "-";
                double? loopNsPerOp = kernel < 0 ? null : Mean(reports, typeof(QemuBaselineBenchmarks), "QemuLoop", ("Kernel", kernel));
                double? startupNs = kernel < 0 ? null : Mean(reports, typeof(QemuBaselineBenchmarks), "QemuStartup", ("Kernel", kernel));
                if (loopNsPerOp is { } l && startupNs is { } s)
                {
                    ulong instructions = ExactLoopInstructions(kernel, QemuBaselineBenchmarks.Iterations);
                    double loopNs = (l * QemuBaselineBenchmarks.LoopInstructions) - s;
                    qemuMips = instructions / loopNs * 1000;
                    exact = instructions.ToString("N0", inv);
                    time = $"{loopNs / 1e9:F3} s (start-up {s / 1e6:F0} ms subtracted)";
                }

                string name = kernel < 0 ? "kvstore (after populate)" : $"compute kernel {kernel} ({(kernel == 0 ? "ALU" : "load/store")})";
                sb.AppendLine(inv, $"| {name} | {Mips(interpreterNs)} | {Mips(translatorNs)} | {qemuMips?.ToString("F1", inv) ?? "-"} | "
                    + $"{Ratio(translatorMips, interpreterMips)} | {Ratio(translatorMips, qemuMips)} | {Ratio(interpreterMips, qemuMips)} | {exact} | {time} |");
            }

            sb.AppendLine();
        }

        if (reports.Any(r => r.BenchmarkCase.Descriptor.Type == typeof(LinuxBootBenchmarks)))
        {
            double? interpreter = Mean(reports, typeof(LinuxBootBenchmarks), "BootToReady", ("Engine", ExecutionEngine.Interpreter));
            double? translator = Mean(reports, typeof(LinuxBootBenchmarks), "BootToReady", ("Engine", ExecutionEngine.Translator));
            double? onAHost = reports.FirstOrDefault(r => r.BenchmarkCase.Descriptor.Type == typeof(LinuxBootOnAHostBenchmarks))?.ResultStatistics?.Mean;
            sb.AppendLine("## Linux boot to 'ferry-init: ready' (fresh machine per boot)");
            sb.AppendLine();
            sb.AppendLine("| interpreter | translator | translator on a host (shared translations) | interpreter / translator | interpreter / on a host |");
            sb.AppendLine("|---:|---:|---:|---:|---:|");
            sb.AppendLine(inv, $"| {(interpreter / 1e6)?.ToString("F0", inv) ?? "-"} ms | {(translator / 1e6)?.ToString("F0", inv) ?? "-"} ms | {(onAHost / 1e6)?.ToString("F0", inv) ?? "-"} ms | {Ratio(interpreter, translator)} | {Ratio(interpreter, onAHost)} |");
            sb.AppendLine();
        }

        if (reports.Any(r => r.BenchmarkCase.Descriptor.Type == typeof(PageSenderBenchmarks)))
        {
            sb.AppendLine("## Page sender (in-memory FrameChannel pair, 32-page batches)");
            sb.AppendLine();
            sb.AppendLine("| content | transport | pages/s | guest MB/s | x 1 Gbit/s (guest bytes) | allocated B/page |");
            sb.AppendLine("|---|---|---:|---:|---:|---:|");
            foreach (string content in new[] { "raw", "zero", "lz4" })
            foreach (string transport in new[] { "inmemory", "pooled", "sink" })
            {
                BenchmarkReport? r = reports.FirstOrDefault(r => r.BenchmarkCase.Descriptor.Type == typeof(PageSenderBenchmarks)
                    && r.BenchmarkCase.Parameters["Content"]?.ToString() == content
                    && r.BenchmarkCase.Parameters["Transport"]?.ToString() == transport);
                if (r is null)
                {
                    continue;
                }

                double pagesPerSecond = 1e9 / r.ResultStatistics!.Mean;
                double bytesPerSecond = pagesPerSecond * GuestMemory.PageSize;
                long? alloc = r.GcStats.GetBytesAllocatedPerOperation(r.BenchmarkCase);
                sb.AppendLine(inv, $"| {content} | {transport} | {pagesPerSecond:N0} | {bytesPerSecond / 1e6:F0} | {bytesPerSecond / GigabitBytesPerSecond:F1} | {alloc?.ToString(inv) ?? "-"} |");
            }

            sb.AppendLine();
        }

        return sb.Length == 0 ? null : sb.ToString();
    }

    /// <summary>Loop instructions of the compute image with <paramref name="iterations"/>: retired(iterations) - retired(0), exact, from Ferry.</summary>
    internal static ulong ExactLoopInstructions(int kernel, long iterations)
    {
        ulong Count(long i) => Guests.RetiredToExit(Guests.Image("compute", ("kernel", (ulong)kernel), ("iterations", (ulong)i)));
        ulong c0 = Count(0), c1 = Count(1000), c2 = Count(2000);
        ulong perIteration = (c2 - c1) / 1000;
        if (c2 - c1 != 1000 * perIteration || perIteration != 20)
        {
            throw new InvalidOperationException($"compute kernel {kernel} is not 20 instructions per iteration: {c0}, {c1}, {c2}");
        }

        return c1 + (perIteration * (ulong)(iterations - 1000)) - c0;
    }

    private static BenchmarkReport? Find(BenchmarkReport[] reports, Type type, string method, params (string Name, object Value)[] parameters)
        => reports.FirstOrDefault(r => r.BenchmarkCase.Descriptor.Type == type
            && r.BenchmarkCase.Descriptor.WorkloadMethod.Name == method
            && parameters.All(p => Equals(r.BenchmarkCase.Parameters[p.Name]?.ToString(), p.Value.ToString())));

    private static double? Mean(BenchmarkReport[] reports, Type type, string method, params (string Name, object Value)[] parameters)
        => Find(reports, type, method, parameters)?.ResultStatistics?.Mean;
}
