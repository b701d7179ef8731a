using System.Globalization;
using System.Text;
using BenchmarkDotNet.Reports;
using Ferry.Benchmarks.Common;
using Ferry.Benchmarks.Machine;
using Ferry.Benchmarks.Migration;
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

        double? FerryNsPerInsn(string workload) => Mean(reports, typeof(HartBenchmarks), "Run", "Workload", workload);

        if (reports.Any(r => r.BenchmarkCase.Descriptor.Type == typeof(HartBenchmarks) || r.BenchmarkCase.Descriptor.Type == typeof(QemuBaselineBenchmarks)))
        {
            sb.AppendLine("## Ferry vs QEMU (guest MIPS, one core)");
            sb.AppendLine();
            sb.AppendLine("| workload | Ferry MIPS | QEMU MIPS | Ferry / QEMU | loop instructions (exact) | QEMU loop time |");
            sb.AppendLine("|---|---:|---:|---:|---:|---:|");
            foreach ((string workload, int kernel) in new[] { ("compute-alu", 0), ("compute-mem", 1) })
            {
                double? ferryNs = FerryNsPerInsn(workload);
                double? loopNsPerOp = Mean(reports, typeof(QemuBaselineBenchmarks), "QemuLoop", "Kernel", kernel);
                double? startupNs = Mean(reports, typeof(QemuBaselineBenchmarks), "QemuStartup", "Kernel", kernel);
                string ferry = ferryNs is { } f ? (1000 / f).ToString("F1", inv) : "-";
                string qemu = "-", ratio = "-", exact = "-", time = "-";
                if (loopNsPerOp is { } l && startupNs is { } s)
                {
                    ulong instructions = ExactLoopInstructions(kernel, QemuBaselineBenchmarks.Iterations);
                    double loopNs = (l * QemuBaselineBenchmarks.LoopInstructions) - s;
                    double qemuMips = instructions / loopNs * 1000;
                    qemu = qemuMips.ToString("F1", inv);
                    exact = instructions.ToString("N0", inv);
                    time = $"{loopNs / 1e9:F3} s (start-up {s / 1e6:F0} ms subtracted)";
                    if (ferryNs is { } f2)
                    {
                        ratio = (1000 / f2 / qemuMips).ToString("F3", inv);
                    }
                }

                sb.AppendLine(inv, $"| compute kernel {kernel} ({(kernel == 0 ? "ALU" : "load/store")}) | {ferry} | {qemu} | {ratio} | {exact} | {time} |");
            }

            if (FerryNsPerInsn("kvstore") is { } kv)
            {
                sb.AppendLine(inv, $"| kvstore (after populate) | {1000 / kv:F1} | - | - | - | - |");
            }

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

    private static BenchmarkReport? Find(BenchmarkReport[] reports, Type type, string method, string param, object value)
        => reports.FirstOrDefault(r => r.BenchmarkCase.Descriptor.Type == type
            && r.BenchmarkCase.Descriptor.WorkloadMethod.Name == method
            && Equals(r.BenchmarkCase.Parameters[param]?.ToString(), value.ToString()));

    private static double? Mean(BenchmarkReport[] reports, Type type, string method, string param, object value)
        => Find(reports, type, method, param, value)?.ResultStatistics?.Mean;
}
